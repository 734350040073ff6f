"""Writing into folders someone else may have prepared, without ever following a symbolic link.

An existing output folder, a Triton repository carried over or a checkpoint folder may come from someone else.
A link planted there (`config.pbtxt -> ~/.bashrc`, `warmup/ -> /elsewhere`) would make a plain `open(path, "w")`
write outside the folder, and a plain copy would read what it points at into an artifact. So:

- every folder below a trusted `root` (the folder the user named, or one this run created) is opened with
  O_NOFOLLOW, one component at a time, relative to its parent's descriptor: a link anywhere in the chain is
  refused, and swapping a folder for a link mid-way cannot redirect the write;
- a file is written to a fresh temporary name (O_EXCL | O_NOFOLLOW) and renamed over the destination: the
  rename replaces a name, never writes through it, and never truncates an inode that is hard-linked elsewhere
  (a carried-over repository shares its files with the previous output by hard links);
- copies refuse links instead of keeping them: a link kept in an output folder would still point outside it
  for whoever serves or unpacks the folder next, and a link copied as its target would read outside it.

Every refusal is an InputError (exit 2) naming the link. Libraries that only write by path (onnx.save with
external data, openvino.save_model) write only into folders this run created with mkdtemp (private, empty), where
no one else can plant a link; what they write reaches a shared folder through copy_tree / copy_file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from modelforge.errors import InputError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def link_refused(path: Path) -> InputError:
    return InputError(
        f"{path} is a symbolic link: modelforge never writes through or copies links",
        hint="replace the link with a real file or folder, or write to a new folder",
    )


def _relative(path: Path, root: Path) -> tuple[str, ...]:
    try:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(root)).parts
    except ValueError:
        raise ValueError(f"{path} is not inside {root}") from None


def _open_child_dir(parent_fd: int, name: str, shown: Path, create: bool) -> int:
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o777, dir_fd=parent_fd)
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            with contextlib.suppress(OSError):
                if stat.S_ISLNK(os.lstat(name, dir_fd=parent_fd).st_mode):
                    raise link_refused(shown) from None
            raise InputError(f"{shown} is not a folder") from None
        raise


@contextlib.contextmanager
def _dir_fd(folder: Path, root: Path, create: bool) -> Iterator[int]:
    """A descriptor of `folder`, reached from `root` without following a link (created on the way if asked)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    try:
        shown = Path(root)
        for part in _relative(folder, root):
            shown = shown / part
            child = _open_child_dir(fd, part, shown, create)
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def make_dirs(folder: Path, root: Path) -> Path:
    """`mkdir -p folder` below `root`, refusing any link on the way (root itself is trusted)."""
    Path(root).mkdir(parents=True, exist_ok=True)
    with _dir_fd(folder, root, create=True):
        pass
    return folder


def check_not_link(path: Path) -> None:
    """Refuse `path` if it is a link (a folder or file about to be read or written)."""
    if path.is_symlink():
        raise link_refused(path)


@contextlib.contextmanager
def open_for_write(path: Path, root: Path | None = None) -> Iterator[IO[bytes]]:
    """A binary file object that becomes `path` when the block ends without error (atomic replace).

    `root` is the trusted folder `path` lies in (default: its parent); no folder between the two, nor `path`
    itself, may be a link. Libraries that accept a file object (torch.save, torch.export.save) write into it."""
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    root.mkdir(parents=True, exist_ok=True)
    with _dir_fd(path.parent, root, create=True) as dir_fd:
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISLNK(os.lstat(path.name, dir_fd=dir_fd).st_mode):
                raise link_refused(path)
        temp = f".{path.name}.tmp-{secrets.token_hex(6)}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666, dir_fd=dir_fd)
        try:
            with os.fdopen(fd, "wb") as file:
                yield file
            # rename replaces the name: a link planted between the check and here is replaced, not followed
            os.replace(temp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=dir_fd)
            raise


def write_bytes(path: Path, data: bytes, root: Path | None = None, mode: int | None = None) -> Path:
    """Write `data` to `path` (see open_for_write); `mode`: permission bits (e.g. 0o755 for a script)."""
    with open_for_write(path, root) as file:
        file.write(data)
        if mode is not None:
            os.fchmod(file.fileno(), mode)
    return path


def write_text(path: Path, text: str, root: Path | None = None, mode: int | None = None) -> Path:
    return write_bytes(path, text.encode("utf-8"), root, mode)


def copy_file(source: Path, target: Path, root: Path | None = None) -> Path:
    """Copy `source` (a file the user named or this run wrote: links to it are the user's choice) to `target`."""
    with open(source, "rb") as src, open_for_write(target, root) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
        os.fchmod(dst.fileno(), stat.S_IMODE(os.fstat(src.fileno()).st_mode))  # scripts stay executable
    return target


def link_or_copy(source: Path, target: Path, root: Path) -> None:
    with _dir_fd(target.parent, root, create=True) as dir_fd:
        try:
            os.link(source, target.name, dst_dir_fd=dir_fd, follow_symlinks=False)
            return
        except OSError:
            pass
    copy_file(source, target, root)


def copy_tree(source: Path, target: Path, root: Path | None = None, hard_link: bool = False) -> list[Path]:
    """Copy the folder `source` into `target` (merged with what is there), refusing any link inside `source`;
    returns the files written. `hard_link`: link files instead of copying where the file system allows it (a
    later write through open_for_write replaces the name, so the source never changes)."""
    source, target = Path(source), Path(target)
    root = Path(root) if root is not None else target
    check_not_link(source)
    make_dirs(target, root)
    written: list[Path] = []
    for folder, dirs, files in os.walk(source, followlinks=False):
        here = Path(folder)
        for name in sorted(dirs + files):
            entry = here / name
            mode = os.lstat(entry).st_mode
            dest = target / entry.relative_to(source)
            if stat.S_ISLNK(mode):
                raise link_refused(entry)
            if stat.S_ISDIR(mode):
                make_dirs(dest, root)
            elif stat.S_ISREG(mode):
                if hard_link:
                    link_or_copy(entry, dest, root)
                else:
                    copy_file(entry, dest, root)
                written.append(dest)
            else:
                raise InputError(f"{entry} is not a regular file or folder (a device, socket or pipe)")
    return written


def check_tree_has_no_links(folder: Path) -> None:
    """Refuse a folder about to be read back or written into (checkpoints, a repository) that holds a link."""
    folder = Path(folder)
    if not folder.exists() and not folder.is_symlink():
        return
    for here, dirs, files in os.walk(folder, followlinks=False):
        for name in sorted(dirs + files):
            entry = Path(here) / name
            if entry.is_symlink():
                raise link_refused(entry)
