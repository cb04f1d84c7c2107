"""Data-parallel training under ``torchrun``: who this process is, and what ranks share.

``torchrun --nproc_per_node N`` starts N copies of a command with ``WORLD_SIZE``, ``RANK``
and ``LOCAL_RANK`` in their environment. :func:`session` reads them, starts the process
group once (gloo on CPU, nccl on CUDA, each rank on GPU ``LOCAL_RANK``) and ends it; without
them (or with ``WORLD_SIZE`` 1) everything here is a no-op on a one-process :class:`World`.

What the ranks share, and how (see ``training.trainer``):

* **The batch is global.** Every rank draws the same seeded random numbers for the whole
  batch and crops only its own ``batch / world`` samples (``PatchSampler(rank=, ranks=)``),
  so the union is the batch a single process draws with the same seed.
* **Gradients are averaged** across ranks with one all-reduce of all parameters' gradients
  (primal and dual nets, each rank's loss being the mean over its equal share), so every
  rank takes the same optimiser step and the nets stay in sync without a ``DDP`` wrapper
  (which would cover the primal net only). The step's loss values travel in the same call.
* **Decisions come from rank 0**: :func:`from_main` computes a value (a validation score)
  there and broadcasts it, so keep-best choices are identical everywhere.
* **Rank 0 alone writes** outputs and checkpoints; the others wait at a barrier at the end.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from srprune.errors import SrpruneError

T = TypeVar("T")
ENV_KEYS = ("WORLD_SIZE", "RANK", "LOCAL_RANK")


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of a run (``size`` 1: a single process)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes files and decides."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """More than one rank and a process group to talk through."""
        return self.size > 1 and dist.is_available() and dist.is_initialized()


def _env_int(environ: Mapping[str, str], key: str, default: int) -> int:
    text = environ.get(key)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise SrpruneError(f"environment variable {key}={text!r} is not an integer "
                           "(set by torchrun)") from None
    if value < 0:
        raise SrpruneError(f"environment variable {key}={text!r} is negative (set by torchrun)")
    return value


def from_env(environ: Mapping[str, str] | None = None) -> World:
    """The world ``torchrun`` describes in ``environ`` (default ``os.environ``).

    No ``WORLD_SIZE``: a single process. A ``RANK`` outside ``0..WORLD_SIZE-1`` is an error.
    """
    environ = os.environ if environ is None else environ
    size = _env_int(environ, "WORLD_SIZE", 1)
    if size < 1:
        raise SrpruneError(f"environment variable WORLD_SIZE={size} must be at least 1")
    rank = _env_int(environ, "RANK", 0)
    if size > 1 and "RANK" not in environ:
        raise SrpruneError(f"WORLD_SIZE={size} is set but RANK is not; start the command with "
                           "torchrun")
    if rank >= size:
        raise SrpruneError(f"environment variable RANK={rank} is outside 0..{size - 1} "
                           f"(WORLD_SIZE={size})")
    return World(rank, size, _env_int(environ, "LOCAL_RANK", rank))


def world() -> World:
    """The running process group's world, else the one the environment describes."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), from_env().local_rank)
    return from_env()


def is_main() -> bool:
    """True in a single process and on rank 0 (the rank that writes outputs)."""
    return world().main


def _start(device: str) -> bool:
    """Start the process group the environment asks for; True if this call started it."""
    here = from_env()
    if here.size == 1 or (dist.is_available() and dist.is_initialized()):
        return False
    if not dist.is_available():
        raise SrpruneError("WORLD_SIZE > 1 but this torch has no torch.distributed")
    cuda = str(device).startswith("cuda")
    if cuda:
        if torch.cuda.device_count() <= here.local_rank:
            raise SrpruneError(f"rank {here.rank} wants GPU {here.local_rank} (LOCAL_RANK), but "
                               f"this machine shows {torch.cuda.device_count()} GPU(s)")
        torch.cuda.set_device(here.local_rank)
    dist.init_process_group("nccl" if cuda else "gloo")
    return True


@contextlib.contextmanager
def session(device: str = "cpu") -> Iterator[World]:
    """The process group for the block: started if ``torchrun`` asked for one and nobody
    started it yet, ended when the block ends (after a barrier, so no rank leaves before
    rank 0 has written its files). Nested sessions share the outer one."""
    started = _start(device)
    ok = False
    try:
        yield world()
        ok = True
    finally:
        if started:
            try:
                if ok:
                    dist.barrier()
            finally:
                dist.destroy_process_group()


def local_device(device: str) -> str:
    """``cuda`` means this rank's GPU (``cuda:LOCAL_RANK``) under torchrun."""
    here = world()
    if device == "cuda" and here.size > 1:
        return f"cuda:{here.local_rank}"
    return device


def check_batch(batch: int, flag: str, here: World | None = None) -> None:
    """The global batch must split evenly across the ranks."""
    here = world() if here is None else here
    if batch % here.size:
        raise SrpruneError(f"{flag} {batch} is the global batch and must be divisible by the "
                           f"{here.size} processes of this run (WORLD_SIZE={here.size})")


def barrier() -> None:
    if world().active:
        dist.barrier()


def from_main(compute: Callable[[], T]) -> T:
    """``compute()`` on rank 0, its result broadcast to every rank (a plain call alone).

    A failure on rank 0 is raised there and, as a one-line ``SrpruneError``, on the others.
    """
    here = world()
    if not here.active:
        return compute()
    box: list[Any] = [None]
    if here.main:
        try:
            box[0] = (True, compute())
        except Exception as exc:
            box[0] = (False, f"{type(exc).__name__}: {exc}")
            dist.broadcast_object_list(box, src=0)
            raise
    dist.broadcast_object_list(box, src=0)
    ok, value = box[0]
    if not ok:
        raise SrpruneError(f"rank 0 failed: {value}")
    return value


def _tensors(modules: Iterable[nn.Module]) -> list[torch.Tensor]:
    return [t for m in modules for t in (*m.parameters(), *m.buffers())]


def sync_modules(modules: Iterable[nn.Module]) -> None:
    """Give every rank rank 0's parameters and buffers (shapes must already agree)."""
    if not world().active:
        return
    tensors = _tensors(list(modules))
    shapes = [tuple(t.shape) for t in tensors]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, shapes)
    for rank, theirs in enumerate(gathered):
        if theirs != shapes:
            raise SrpruneError(f"rank {rank} holds a differently shaped model than rank "
                               f"{dist.get_rank()} ({len(theirs)} vs {len(shapes)} tensors or "
                               "other widths): every rank must build and prune the same model")
    for t in tensors:
        dist.broadcast(t.data, src=0)


def average_gradients(params: Iterable[nn.Parameter], values: torch.Tensor) -> torch.Tensor:
    """Average the gradients of ``params`` and the 1-d ``values`` over the ranks, in one
    all-reduce; returns the averaged ``values`` (the step's losses)."""
    here = world()
    if not here.active:
        return values
    grads = [p.grad for p in params if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads]
                     + [values.detach().to(device=grads[0].device if grads else values.device,
                                           dtype=grads[0].dtype if grads else values.dtype)])
    dist.all_reduce(flat)
    flat /= here.size
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n
    return flat[offset:].to(values.device, values.dtype)
