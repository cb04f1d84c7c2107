"""Measured ONNX Runtime latency of single convolutions, cached per machine and thread count.

The ``latency`` strategy predicts a plan's latency as the sum of its convolutions' measured
latencies (each conv at its planned channel counts and its real input size) plus the rest
of the network (adds, PixelShuffle, attention, ...), which is measured once on the unpruned
model and held constant. Each conv shape is exported alone, run in an ORT session with the
latency protocol's settings, and timed (median); shapes are measured the first time a plan
needs them and kept in a JSON file under the cache key: CPU model, ORT version, threads.

Cache folder: ``$SRPRUNE_CACHE_DIR`` or ``~/.cache/srprune``.

A cached table is checked before it is trusted (:meth:`LatencyTable.check`): no entry may
be faster than physics allows (its MACs at :data:`PEAK_MACS_PER_S` per thread, and at least
:data:`MIN_RUN_MS` for any ORT run), and a few of its largest convs are timed again and must
agree within a factor :data:`AGREE`. A table that fails is measured anew, with a warning.
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import re
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from srprune.errors import SrpruneError
from srprune.hooks import hooked
from srprune.io.checkpoint import write_atomic
from srprune.measure.latency import time_interleaved
from srprune.measure.session import make_session

FORMAT = "srprune-latency-table"
# A generous ceiling on one thread's fp32 multiply-accumulates per second: a 5 GHz core with
# two AVX-512 FMA units does 160 G; no real conv runs faster than its MACs at this rate.
PEAK_MACS_PER_S = 1e12
MIN_RUN_MS = 1e-3  # an ORT session.run from Python costs microseconds, whatever it computes
SAMPLE = 2  # cached entries (the most MACs: the least noisy) timed again when a table loads
AGREE = 4.0  # ... which must agree with the cache within this factor, either way
_KEY = re.compile(r"conv(\d+)-(\d+)-k(\d+)x(\d+)-s(\d+)x(\d+)-p(\d+)x(\d+)-d(\d+)x(\d+)"
                  r"-g(\d+)@(\d+)x(\d+)")


@dataclass(frozen=True)
class ConvShape:
    """One convolution call: channels, kernel, stride, padding, dilation, groups, input size."""

    c_in: int
    c_out: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    size: tuple[int, int]  # input height, width

    def key(self) -> str:
        k, s, p, d = self.kernel, self.stride, self.padding, self.dilation
        return (f"conv{self.c_in}-{self.c_out}-k{k[0]}x{k[1]}-s{s[0]}x{s[1]}-p{p[0]}x{p[1]}"
                f"-d{d[0]}x{d[1]}-g{self.groups}@{self.size[0]}x{self.size[1]}")

    @classmethod
    def parse(cls, key: str) -> ConvShape | None:
        """The shape a :meth:`key` names (None for anything else)."""
        match = _KEY.fullmatch(key)
        if match is None:
            return None
        v = [int(g) for g in match.groups()]
        return cls(v[0], v[1], (v[2], v[3]), (v[4], v[5]), (v[6], v[7]), (v[8], v[9]), v[10],
                   (v[11], v[12]))

    def macs(self) -> int:
        """Multiply-accumulates of one call (what bounds its time from below)."""
        k, s, p, d = self.kernel, self.stride, self.padding, self.dilation
        out = [max(0, (self.size[i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1)
               for i in (0, 1)]
        return (self.c_in // max(1, self.groups)) * self.c_out * k[0] * k[1] * out[0] * out[1]

    def floor_ms(self, threads: int) -> float:
        """The least time this conv can physically take with ``threads`` threads."""
        return max(MIN_RUN_MS, 1e3 * self.macs() / (PEAK_MACS_PER_S * threads))

    @classmethod
    def of(cls, conv: nn.Conv2d, c_in: int, c_out: int, size: tuple[int, int]) -> ConvShape:
        """``conv``'s shape with ``c_in``/``c_out`` channels (a depthwise conv stays one)."""
        groups = conv.groups
        if groups > 1 and groups == conv.in_channels == conv.out_channels:
            groups = c_in
        if isinstance(conv.padding, str):
            raise SrpruneError(f"padding '{conv.padding}' is not in the latency table")
        return cls(c_in, c_out, tuple(conv.kernel_size), tuple(conv.stride),
                   tuple(conv.padding), tuple(conv.dilation), groups, tuple(size))


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_key(threads: int) -> str:
    """What a measured table is valid for: CPU model, ORT version and thread count."""
    return f"{cpu_model()} | onnxruntime {ort.__version__} | {threads} thread(s)"


def cache_dir() -> Path:
    return Path(os.environ.get("SRPRUNE_CACHE_DIR") or Path.home() / ".cache" / "srprune")


class LatencyTable:
    """Median ORT latency (ms) per :class:`ConvShape`, measured on demand and cached."""

    def __init__(self, threads: int = 1, path: str | Path | None = None, runs: int = 7,
                 warmup: int = 2, measure: Callable[[ConvShape], float] | None = None,
                 sample: int = SAMPLE) -> None:
        if threads < 1:
            raise SrpruneError(f"thread count must be at least 1, got {threads}")
        self.threads, self.runs, self.warmup = threads, runs, warmup
        self.key = machine_key(threads)
        slug = "".join(c if c.isalnum() else "-" for c in self.key).strip("-")[:120]
        self.path = Path(path) if path else cache_dir() / f"latency-{slug}.json"
        self._measure = measure or self._measure_ort
        self.entries: dict[str, float] = self._load()
        self.measured = 0  # shapes measured by this instance (the rest came from the cache)
        #: why the cached table was not trusted and is measured again (None: trusted or none)
        self.rejected: str | None = self.check(sample) if self.entries else None
        if self.rejected is not None:
            warnings.warn(f"latency table {self.path}: {self.rejected}; measuring it again",
                          UserWarning, stacklevel=2)
            self.entries = {}

    def _load(self) -> dict[str, float]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise SrpruneError(f"latency table {self.path} is unreadable ({exc}); delete it "
                               "to measure again") from None
        entries = data.get("entries") if isinstance(data, dict) else None
        if (not isinstance(data, dict) or data.get("format") != FORMAT
                or not isinstance(entries, dict) or not all(
                    isinstance(k, str) and isinstance(v, (int, float))
                    and not isinstance(v, bool) and np.isfinite(v) and v > 0
                    for k, v in entries.items())):
            raise SrpruneError(f"latency table {self.path} is damaged (not a table of "
                               "positive times); delete it to measure again")
        if data.get("machine") != self.key:
            raise SrpruneError(f"latency table {self.path} was measured on another machine "
                               f"({data.get('machine')!r:.80}); delete it to measure again")
        return {k: float(v) for k, v in entries.items()}

    def check(self, sample: int = SAMPLE) -> str | None:
        """Why the loaded entries cannot be real timings of this machine, or None.

        A table that is well formed and from this machine may still be wrong: written by
        hand, copied, measured under heavy load. Every entry must be at least its conv's
        physical floor (:meth:`ConvShape.floor_ms`), and the ``sample`` entries with the most
        MACs are timed again: each must agree with the cache within :data:`AGREE` (a second
        timing settles a disagreement, so one noisy run does not throw the table away).
        """
        shapes: dict[str, ConvShape] = {}
        for key, ms in self.entries.items():
            shape = ConvShape.parse(key)
            if shape is None:
                return f"entry {key!r:.60} does not name a convolution"
            if ms < shape.floor_ms(self.threads):
                too_fast = sum(1 for k, v in self.entries.items()
                               if (c := ConvShape.parse(k)) is not None
                               and v < c.floor_ms(self.threads))
                return (f"{too_fast} of {len(self.entries)} cached times are below what the "
                        f"hardware allows (e.g. {key}: {ms:.3g} ms for {shape.macs():,} MACs, "
                        f"at least {shape.floor_ms(self.threads):.3g} ms)")
            shapes[key] = shape
        largest = sorted(shapes, key=lambda k: shapes[k].macs(), reverse=True)[:sample]
        for key in largest:
            cached = self.entries[key]
            fresh = [max(float(self._measure(shapes[key])), 1e-12)]
            if not 1 / AGREE <= cached / fresh[0] <= AGREE:
                fresh.append(max(float(self._measure(shapes[key])), 1e-12))
            closest = min(fresh, key=lambda ms: abs(math.log(cached / ms)))
            if not 1 / AGREE <= cached / closest <= AGREE:
                return (f"{key} is cached at {cached:.3g} ms but times at {closest:.3g} ms "
                        f"now (more than {AGREE:g}x apart)")
        return None

    def save(self) -> None:
        payload = {"format": FORMAT, "machine": self.key, "entries": self.entries}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SrpruneError(f"cannot create the latency cache {self.path.parent}: "
                               f"{exc.strerror or exc}") from None
        write_atomic(self.path, lambda tmp: tmp.write_text(json.dumps(payload, indent=0)),
                     force=True)

    def __call__(self, shape: ConvShape) -> float:
        key = shape.key()
        if key not in self.entries:
            self.entries[key] = float(self._measure(shape))
            self.measured += 1
        return self.entries[key]

    def _measure_ort(self, shape: ConvShape) -> float:
        conv = nn.Conv2d(shape.c_in, shape.c_out, shape.kernel, shape.stride, shape.padding,
                         shape.dilation, shape.groups).eval()
        example = torch.rand(1, shape.c_in, *shape.size)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "conv.onnx"
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    torch.onnx.export(conv, (example,), str(path), dynamo=False,
                                      opset_version=17, input_names=["x"])
            except Exception as exc:  # the exporter raises many kinds
                raise SrpruneError(f"cannot measure {shape.key()} here: {exc}") from None
            session = make_session(path, self.threads)
            feed = {"x": example.numpy()}
            timings = time_interleaved([lambda: session.run(None, feed)], self.runs,
                                       self.warmup)
        return float(np.median(timings.wall_ms[0]))


def conv_inputs(net: nn.Module, input_size: tuple[int, int],
                channels: int = 3) -> dict[str, list[tuple[int, int]]]:
    """Input height and width of every call of every ``nn.Conv2d`` in one forward pass
    (on a meta-device copy: nothing is computed)."""
    shadow = copy.deepcopy(net).to("meta")
    names = {m: n for n, m in shadow.named_modules()}
    sizes: dict[str, list[tuple[int, int]]] = {}

    def hook(module: nn.Module, inputs: tuple, _output: object) -> None:
        sizes.setdefault(names[module], []).append(tuple(inputs[0].shape[-2:]))

    convs = [m for m in shadow.modules() if isinstance(m, nn.Conv2d)]
    with hooked((m, hook) for m in convs), torch.no_grad():
        shadow.eval()(torch.zeros(1, channels, *input_size, device="meta"))
    return sizes
