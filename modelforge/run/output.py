"""The output folder: what a run may write or replace, the staging folder, and the atomic move into place.

Outputs are written to a hidden temporary folder beside the target and renamed into place at the end, so an
interrupted or failed run leaves nothing half-written and an existing folder untouched. `--force` only ever
moves aside a folder modelforge wrote (to OUT.previous); a run leaves no trace when it fails, not even the parent
folders it made. Models added to a repository outside the output (export --repository) are published here too,
once the output is in place.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from modelforge.errors import InputError, OutputExistsError
from modelforge.manifest import MANIFEST_NAME, is_modelforge_output
from modelforge.model.artifact import ModelArtifact
from modelforge.passes import get_pass
from modelforge.recipe.schema import Recipe


def check_output_dir(recipe: Recipe, dry_run: bool = False) -> Path:
    """Refuse, before any work, an output the run may not write or replace. A dry run writes nothing: an
    existing folder is no reason to refuse it (plan_recipe says what a real run would need)."""
    out = recipe.output.dir
    if out.exists() and not recipe.output.force and not dry_run and not extends_output(recipe, out):
        raise OutputExistsError(str(out))
    if out.exists() and not out.is_dir():
        raise InputError(f"output {out} exists and is not a directory")
    if not out.exists():  # found now, not after the passes have run: a file where a parent folder must go
        blocking = next((p for p in out.absolute().parents if p.exists() or p.is_symlink()), None)
        if blocking is not None and not blocking.is_dir():
            raise InputError(f"output {out}: cannot create it, {blocking} is not a directory")
    if out.exists():  # --force moves it aside: never the folder we run in or one holding the inputs
        sources = (recipe.data.calibration, recipe.data.eval_data, recipe.data.train)
        for kept in (Path.cwd(), recipe.model.path, *(s.path for s in sources if s is not None)):
            kept = kept.resolve()
            if kept == out.resolve() or out.resolve() in kept.parents:
                raise InputError(
                    f"output {out} holds {kept}, which --force would move aside", hint="write to a folder of its own"
                )
        if recipe.output.force:
            _check_replaceable(out)
        elif not dry_run and _moved_aside(out):
            _check_previous_slot(out)
    return out


def previous_output(out: Path) -> Path:
    """Where --force moves the output it replaces: one sibling slot, so a mistaken --force can be undone
    (`mv OUT.previous OUT`) and repeated CI runs keep one old copy, not one per run."""
    return out.with_name(out.name + ".previous")


def extends_output(recipe: Recipe, out: Path) -> bool:
    """A pass that adds to the existing output (export's next Triton model version) needs no --force."""
    for spec in recipe.passes:
        pass_cls = get_pass(spec.name)
        if out.is_dir() and pass_cls.extends_output(pass_cls.Config.model_validate(spec.config), out):
            return True
    return False


def _moved_aside(out: Path) -> bool:
    """An extended folder (next Triton version) that modelforge did not write is moved aside, not deleted."""
    return out.is_dir() and any(out.iterdir()) and not is_modelforge_output(out)


def _check_replaceable(out: Path) -> None:
    """--force only ever moves aside a folder modelforge wrote (or an empty one), and only over a previous slot
    that is ours too: a folder someone else made is never moved or deleted."""
    if out.is_symlink():
        raise InputError(f"output {out} is a symbolic link: --force never replaces a link", hint="name the folder")
    if not any(out.iterdir()):  # an empty folder is simply replaced
        return
    if not is_modelforge_output(out):
        raise InputError(
            f"output {out} was not written by modelforge (no modelforge {MANIFEST_NAME} in it): --force never "
            "moves or deletes such a folder",
            hint=f"write to a new folder, e.g. {out / 'run'}, or remove it yourself",
        )
    _check_previous_slot(out)


def _check_previous_slot(out: Path) -> None:
    previous = previous_output(out)
    if previous.is_symlink() or (previous.exists() and not previous.is_dir()):
        raise InputError(f"{previous} is in the way (not a folder): --force moves the old output there")
    if previous.is_dir() and any(previous.iterdir()) and not is_modelforge_output(previous):
        raise InputError(
            f"{previous} was not written by modelforge: --force moves the old output there and would replace it",
            hint="move or remove it yourself",
        )


@dataclass
class Staging:
    """A run's private folders: `workdir` for the stages, `folder` for the output being written (beside `out`)."""

    out: Path
    workdir: Path
    folder: Path
    created: list[Path] = field(default_factory=list)  # parent folders this run made for its output
    finished: bool = False

    def move_into_place(self, extending: bool) -> Path | None:
        """Make the finished folder the output; returns where an output it replaced went, if it was kept."""
        self.folder.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the output is a normal folder
        moved = _move_into_place(self.folder, self.out, extending)
        self.finished = True
        return moved


@contextmanager
def staged_output(out: Path, primary: bool = True) -> Iterator[Staging]:
    """The run's work and staging folders, removed when it ends; a run that never moved its output into place
    also removes the parent folders it created. `primary=False` (torchrun's other ranks): they never write
    into the output's folder, so a private one stands in for staging."""
    created = make_parents(out) if primary else []
    try:
        workdir = Path(tempfile.mkdtemp(prefix="modelforge-work-"))
    except OSError as exc:
        remove_empty(created)
        raise InputError(
            f"cannot create a temporary folder in {tempfile.gettempdir()}: {exc.strerror or exc}",
            hint="set TMPDIR to a writable folder",
        ) from exc
    try:
        where = out.parent if primary else workdir
        folder = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=where))
    except OSError as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        remove_empty(created)
        raise InputError(f"output {out}: cannot create a folder in {out.parent}: {exc.strerror or exc}") from exc
    staging = Staging(out, workdir, folder, created)
    try:
        yield staging
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)
        if not staging.finished:  # a failed run leaves no trace, not even the parent folders it made for its output
            remove_empty(created)


def make_parents(out: Path) -> list[Path]:
    """Create the output's missing parent folders; returns those created, outermost first."""
    missing = [p for p in (out.parent, *out.parent.parents) if not p.exists()][::-1]
    created: list[Path] = []
    for folder in missing:
        try:
            folder.mkdir()
        except FileExistsError:
            if not folder.is_dir():
                remove_empty(created)
                raise InputError(f"output {out}: cannot create it, {folder} is not a directory") from None
        except OSError as exc:
            remove_empty(created)
            raise InputError(f"output {out}: cannot create {folder}: {exc.strerror or exc}") from exc
        else:
            created.append(folder)
    return created


def remove_empty(folders: list[Path]) -> None:
    """Remove folders this run created, innermost first, where they are still empty."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            return


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _move_into_place(staging: Path, out: Path, extending: bool) -> Path | None:
    """Rename the finished folder into place. An existing output is renamed to OUT.previous first (--force,
    or an extended folder modelforge did not write), or removed after its content was carried over (an
    extended modelforge folder); returns where the old one went, if it was kept."""
    if not out.exists():
        staging.rename(out)
        return None
    if not any(out.iterdir()):  # an empty folder: nothing to keep
        out.rmdir()
        staging.rename(out)
        return None
    if extending and is_modelforge_output(out):  # its other models and versions were carried into staging
        old = out.with_name(f".{out.name}.old-{time.time_ns()}")
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
        return None
    if extending:  # a folder someone else made, extended: kept whole as OUT.previous
        _check_previous_slot(out)
    else:  # --force; checked again right before: the folder may have changed while the run worked
        _check_replaceable(out)
    previous = previous_output(out)
    if previous.is_dir():  # the slot holds an older output of ours (checked above): the new one replaces it
        gone = previous.with_name(f".{previous.name}.old-{time.time_ns()}")
        previous.rename(gone)
        shutil.rmtree(gone, ignore_errors=True)
    out.rename(previous)
    staging.rename(out)
    return previous


def publish(final: ModelArtifact, passed: bool) -> tuple[list[str], list[str]]:
    """Add what the run built for a long-lived repository outside its output, once the output is in place:
    only a run whose gates passed, so a shared repository never serves a model its gates refused. Returns the
    places published and those held back."""
    places = [str(p.destination / str(p.version)) for p in final.publications]
    if not passed:
        return [], places
    from modelforge.export.triton import publish_model

    for publication in final.publications:
        publish_model(publication.staged, publication.destination, publication.version)
    return places, []
