"""Which files ``srprune upscale`` reads and where each result goes, all checked up front.

Files named on the command line go to ``OUT/<stem>.<fmt>``; images found in a folder go to
``OUT/<path inside that folder>`` (``--recursive``: subfolders too, mirrored), so nothing is
flattened into a name clash. Everything that would stop the run is found before any pixel is
computed: a path that does not exist, a folder without images, two inputs that would write the
same file, and outputs that exist already (refused without ``--force``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from srprune.errors import SrpruneError
from srprune.upscale.image_io import READABLE


@dataclass(frozen=True)
class Job:
    """One input image and the file its result is written to."""

    source: Path
    target: Path


def find_jobs(inputs: Sequence[str], out: Path, fmt: str, recursive: bool) -> list[Job]:
    """The jobs for ``inputs`` (files and folders), in order; one-line errors up front."""
    jobs: list[Job] = []
    for given in inputs:
        path = Path(given)
        if path.is_dir():
            found = _images_in(path, recursive)
            if not found:
                where = "or its subfolders " if recursive else ""
                hint = "" if recursive or not _has_subfolder_images(path) else \
                    " (its subfolders have some: pass --recursive)"
                raise SrpruneError(f"no images ({', '.join(READABLE)}) in folder {path} "
                                   f"{where}{hint}".rstrip())
            jobs += [Job(f, out / f.relative_to(path).with_suffix(f".{fmt}")) for f in found]
        elif path.is_file():
            if path.suffix.lower() not in READABLE:
                raise SrpruneError(f"{path} is not an image file (expected one of "
                                   f"{', '.join(READABLE)})")
            jobs.append(Job(path, out / f"{path.stem}.{fmt}"))
        else:
            raise SrpruneError(f"input not found: {path}")
    _refuse_clashes(jobs)
    return jobs


def _images_in(folder: Path, recursive: bool) -> list[Path]:
    pattern = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in pattern
                  if p.is_file() and p.suffix.lower() in READABLE
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _has_subfolder_images(folder: Path) -> bool:
    return any(p.suffix.lower() in READABLE for p in folder.rglob("*") if p.is_file())


def _refuse_clashes(jobs: list[Job]) -> None:
    seen: dict[Path, Path] = {}
    for job in jobs:
        first = seen.setdefault(job.target.resolve(), job.source)
        if first != job.source:
            raise SrpruneError(f"{first} and {job.source} would both be written to "
                               f"{job.target}; give them in separate runs or rename one")


def check_targets(jobs: Sequence[Job], out: Path, force: bool) -> None:
    """``out`` must be (or become) a writable folder; existing results need ``force``."""
    for parent in [out, *out.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise SrpruneError(f"cannot write to {out}: {parent} is a file, not a folder")
            break
    existing = [j.target for j in jobs if j.target.exists()]
    folders = [t for t in existing if t.is_dir()]
    if folders:
        raise SrpruneError(f"cannot write {folders[0]}: it is a folder")
    if existing and not force:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise SrpruneError(f"{existing[0]}{more} already exist(s); pass --force to overwrite")
