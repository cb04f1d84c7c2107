"""Safe checkpoint I/O: tensors and plain data only, atomic writes, no silent overwrite."""

from __future__ import annotations

import errno
import os
import pickle
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from srprune.errors import SrpruneError


def read_checkpoint(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` with one clear error per failure mode.

    Whatever the file holds (random bytes, a truncated or foreign file, pickled code), the
    result is the loaded object or a one-line ``SrpruneError`` naming the file.
    """
    path = Path(path)
    if path.is_dir():
        raise SrpruneError(f"{path} is a folder, not a checkpoint file")
    if not path.is_file():
        raise SrpruneError(f"checkpoint not found: {path}")
    try:
        if path.stat().st_size == 0:
            raise SrpruneError(f"{path} is not a readable checkpoint (the file is empty)")
        return torch.load(path, map_location="cpu", weights_only=True)
    except SrpruneError:
        raise
    except pickle.UnpicklingError as exc:
        match = _GLOBAL.search(str(exc))
        if match:
            raise SrpruneError(
                f"{path} holds pickled Python code ({match.group(1)}), not just tensors; "
                "refusing to load it (srprune only loads weights_only checkpoints)"
            ) from None
        raise SrpruneError(f"{path} is not a readable checkpoint (corrupt or not a "
                           "torch file)") from None
    except MemoryError:
        raise SrpruneError(f"{path} is not a readable checkpoint (it asks for more memory "
                           "than there is)") from None
    except (RuntimeError, OSError) as exc:  # the zip reader (truncated file), the disk
        raise SrpruneError(f"{path} is not a readable checkpoint "
                           f"({_first_sentence(exc)})") from None
    except Exception:  # the unpickler on foreign bytes: IndexError, KeyError, EOFError, ...
        raise SrpruneError(f"{path} is not a readable checkpoint (corrupt or not a "
                           "torch file)") from None


# "Unsupported global: GLOBAL mod.Cls ..." and "unsupported GLOBAL posix.system whose module"
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def _first_sentence(exc: BaseException, limit: int = 120) -> str:
    """``PytorchStreamReader failed reading zip archive: failed finding central directory``
    rather than the paragraph after it."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = _first_line(exc).split(". ")[0].rstrip(".")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def check_writable(path: str | Path, force: bool) -> Path:
    """Refuse to overwrite an existing file unless ``force``; the folder must exist and take
    a new file (checked before long work starts, not after it)."""
    path = Path(path)
    if path.is_dir():
        raise SrpruneError(f"{path} is a folder, not a file path")
    if path.exists() and not force:
        raise SrpruneError(f"{path} already exists; pass --force to overwrite it")
    if not path.parent.exists():
        raise SrpruneError(f"folder {path.parent} does not exist")
    if not path.parent.is_dir():
        raise SrpruneError(f"cannot write {path}: {path.parent} is a file, not a folder")
    try:  # prove it (permissions, read-only mounts): create and remove a scratch file
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise SrpruneError(f"cannot write {path}: {_os_reason(exc)}") from None
    return path


def write_atomic(path: str | Path, writer: Callable[[Path], None], force: bool = False) -> Path:
    """Write through a temporary file in the same folder, then rename over ``path``.

    Nothing is left behind when writing fails or is interrupted; an ``OSError`` (disk full,
    no permission), or torch's zip writer failing (a ``RuntimeError`` that has lost the OS
    error: the reason is then found from the folder's free space), becomes a one-line
    ``SrpruneError`` naming the file. The file gets the
    mode any new file would (0666 less the umask), not the temporary file's 0600.
    """
    path = check_writable(path, force)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise SrpruneError(f"cannot write {path}: {_os_reason(exc)}") from None
    os.close(fd)
    try:
        writer(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp made it 0600: give it a new file's mode
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise SrpruneError(f"cannot write {path}: {_os_reason(exc)}") from None
    except RuntimeError as exc:
        if not _stream_writer_failure(exc):
            Path(tmp).unlink(missing_ok=True)
            raise
        reason = _write_failure_reason(exc, Path(tmp))  # measured before the file goes
        Path(tmp).unlink(missing_ok=True)
        raise SrpruneError(f"cannot write {path}: {reason}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# torch's zip writer (torch.save) reports a failed write as a RuntimeError from C++ without
# the OS error: "[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534" (a
# full disk under the end of the file) or "PytorchStreamWriter failed writing file data/0:
# file write failed"
_STREAM_WRITER = re.compile(r"inline_container|PytorchStreamWriter|file write failed")
FULL_MARGIN = 1 << 20  # bytes: a folder with less free space than this counts as full


def _stream_writer_failure(exc: RuntimeError) -> bool:
    """A RuntimeError that is torch's zip writer failing to write, not a bug of ours."""
    return bool(_STREAM_WRITER.search(str(exc)))


def _free_bytes(folder: Path) -> int | None:
    """Bytes an unprivileged process may still write in ``folder``'s filesystem."""
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):  # no statvfs (Windows) or the folder went away
        return None
    return st.f_bavail * st.f_frsize


def _write_failure_reason(exc: RuntimeError, tmp: Path) -> str:
    """The OS reason torch's message lost: a full disk when the folder has (almost) no free
    space left with the partial file still in it; otherwise torch's own first sentence."""
    free = _free_bytes(tmp.parent)
    if free is not None and free < FULL_MARGIN:
        return f"{os.strerror(errno.ENOSPC)} ({free} bytes free)"
    detail = _first_line(exc)
    detail = re.sub(r"^\[enforce fail at [^\]]*\]\s*\.?\s*", "", detail) or detail
    return f"the write failed ({detail})"


def _umask() -> int:
    """The process umask (read by setting it and putting it straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _os_reason(exc: OSError) -> str:
    return exc.strerror or _first_line(exc)


def save_checkpoint(obj: Any, path: str | Path, force: bool = False) -> Path:
    """``torch.save`` atomically; ``obj`` must be tensors and plain containers/scalars."""
    return write_atomic(path, lambda tmp: torch.save(obj, tmp), force)
