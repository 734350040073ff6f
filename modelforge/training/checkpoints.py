"""Where prune and distill checkpoint, and how the final checkpoints reach the output folder, once.

A folder the user names (`--checkpoint-dir`, `checkpoint_dir:`) holds them and keeps them: they live there
only, and the output gets no copy. Otherwise they live in the cache, under a key of the output folder, so an
interrupted run can be resumed with `--resume` alone; once the pass is done, the final best.pt and last.pt
go into the output's `checkpoints/` and the cache folder is removed. Nothing is written beside the output.

Either folder may hold someone else's links (a shared cache, a folder in a pull request): it is refused
with exit 2 if it holds any, and every checkpoint is written with modelforge.safe_files.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from modelforge.safe_files import check_tree_has_no_links, copy_file


def default_checkpoint_dir(output: Path) -> Path:
    from modelforge.cache_dir import cache_root

    key = hashlib.sha256(os.path.abspath(output).encode()).hexdigest()[:16]
    return cache_root() / "checkpoints" / f"{Path(output).name or 'output'}-{key}"


def checkpoint_dir(named: Path | None, output: Path | None, workdir: Path | None = None, create: bool = True) -> Path:
    """The folder a training pass checkpoints into: the one named, else the cache's for this output, else (a
    pass run on its own, or a cache folder that cannot be created) its private work folder. `create=False`:
    only say where (a dry run writes nothing)."""
    if named is not None:
        return Path(named)
    if output is not None:
        folder = default_checkpoint_dir(output)
        if not create:
            return folder
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            return folder
        except OSError:  # an unusable cache never fails a run; only --resume is then unavailable
            pass
    return Path(workdir) / "checkpoints"


def check_checkpoint_dir(folder: Path) -> None:
    """Refuse a checkpoint folder holding a link before anything in it is read (resume) or written."""
    check_tree_has_no_links(folder)


def keep_final(folder: Path, names: tuple[str, ...], into: Path, *, named: bool) -> list[str]:
    """The checkpoints the output keeps (copied into the pass's work folder `into`), and the cache folder
    removed: none when the user named the checkpoint folder (they live there, once)."""
    from modelforge.training import distributed

    if named or not distributed.is_primary():  # under torchrun only rank 0 writes checkpoints and the output
        return []
    into.mkdir(parents=True, exist_ok=True)
    kept = [str(copy_file(folder / name, into / name)) for name in names if (folder / name).is_file()]
    return kept


def remove_default(folder: Path, named: bool) -> None:
    """Remove the cache's checkpoint folder once its pass is done (a named folder is the user's: kept)."""
    from modelforge.training import distributed

    if not named and distributed.is_primary() and not folder.is_symlink():
        shutil.rmtree(folder, ignore_errors=True)


def finish_checkpoints(final: Path, root: Path, workdir: Path, *, named: bool, record: dict) -> tuple[Path, ...]:
    """After a training pass: keep the final best.pt and last.pt for the output, remove the cache's folder `root`,
    and say in the stage record where the kept ones went."""
    kept = keep_final(final, ("best.pt", "last.pt"), workdir / "kept", named=named)
    remove_default(root, named)
    if not named:  # the cache's folder is gone: the output's checkpoints/ holds what is kept
        record["checkpoints"] = "checkpoints/ in the output" if kept else None
    return tuple(Path(k) for k in kept)
