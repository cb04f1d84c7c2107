"""ONNX Runtime's own per-node profile of a model, and the split of its time by kind of work.

:func:`kernel_events` runs a model in a session with the latency protocol's settings and
ORT's profiler on, and returns the kernel events of the timed runs. :func:`time_split` sums
them into three parts:

* ``conv``: convolution kernels (``Conv``, blocked ``NchwcConv``, ``FusedConv``);
* ``width_scaled``: every other kernel that writes a feature tensor (more channels than the
  image has): residual adds, attention, layout reorders, PixelShuffle's ``DepthToSpace``.
  These are memory-bound and shrink with the channels pruning removes;
* ``fixed``: kernels that write image-sized tensors (the bicubic ``Resize`` of the input, a
  ``DepthToSpace`` to RGB, the final add of a skip): no pruning changes them.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from srprune.errors import SrpruneError
from srprune.measure.session import make_session, random_input

CONV_OPS = ("Conv", "NchwcConv", "FusedConv")


def kernel_events(path: str | Path, input_size: tuple[int, int], threads: int = 1,
                  runs: int = 3, warmup: int = 1) -> list[dict]:
    """Per-node kernel events of ``runs`` timed runs (after ``warmup``), ORT's profiler."""
    feed = random_input(input_size)
    with tempfile.TemporaryDirectory() as folder:  # the profile file goes with it
        session = make_session(path, threads, profile_prefix=Path(folder) / "profile")
        name = session.get_inputs()[0].name
        for _ in range(warmup + runs):
            session.run(None, {name: feed})
        try:
            trace = json.loads(Path(session.end_profiling()).read_text())
        except (OSError, ValueError) as exc:
            raise SrpruneError(f"ONNX Runtime's profile of {path} is unreadable: "
                               f"{exc}") from None
    runs_seen = [e for e in trace if e.get("cat") == "Session" and e.get("name") == "model_run"]
    first_timed = runs_seen[warmup]["ts"] if len(runs_seen) > warmup else 0
    return [e for e in trace if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")
            and e["ts"] >= first_timed]


def op_name(event: dict) -> str:
    """The operator ORT ran for a kernel event (``NchwcConv`` for its blocked conv)."""
    op = event.get("args", {}).get("op_name", "?")
    return "NchwcConv" if op == "Conv" and "_nchwc" in event["name"] else op


def _channels(event: dict) -> list[int]:
    """Channel counts (dim 1) of the event's output tensors of rank >= 3 (of its inputs
    when the profile gives no output shape)."""
    args = event.get("args", {})
    for key in ("output_type_shape", "input_type_shape"):
        shapes = [next(iter(t.values()), []) for t in args.get(key, [])
                  if isinstance(t, dict)]
        channels = [int(s[1]) for s in shapes if isinstance(s, list) and len(s) >= 3]
        if channels:
            return channels
    return []


@dataclass(frozen=True)
class TimeSplit:
    """Kernel ms per run: convolutions, width-scaled work, fixed work (see the module)."""

    conv: float
    width_scaled: float
    fixed: float

    @property
    def total(self) -> float:
        return self.conv + self.width_scaled + self.fixed


def time_split(events: list[dict], runs: int, image_channels: int = 3) -> TimeSplit:
    """Sum ``runs`` runs' kernel events into a :class:`TimeSplit` (ms per run)."""
    if runs < 1:
        raise SrpruneError(f"runs must be at least 1, got {runs}")
    conv = scaled = fixed = 0.0
    for event in events:
        ms = event.get("dur", 0) / 1000.0 / runs
        if op_name(event) in CONV_OPS:
            conv += ms
        elif any(c > image_channels for c in _channels(event)):
            scaled += ms
        else:
            fixed += ms
    return TimeSplit(conv, scaled, fixed)


def profile_split(path: str | Path, input_size: tuple[int, int], threads: int = 1,
                  runs: int = 3, image_channels: int = 3) -> TimeSplit:
    """:func:`time_split` of a fresh profile of the ONNX model at ``path``."""
    return time_split(kernel_events(path, input_size, threads, runs), runs, image_channels)

