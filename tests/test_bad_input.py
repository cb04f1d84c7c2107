"""The bad-input catalogue: every way a user can hand a command something wrong.

One table of cases, each run in-process with ``CliRunner`` in its own folder. A failing case
must end as the README promises: its exit code (2 for user errors, 130 for Ctrl-C), exactly
one non-empty stderr line starting with ``error:``, no traceback, every file that was there
before unchanged and nothing new left behind (no partial output, no temp file). The few
inputs that are accepted (grey, palette, CMYK images: converted with a warning) must end
with exit 0 and only ``warning:``/``note:`` lines on stderr. Python warnings are shown on
stderr as the real command line shows them; the progress reporter's plain ``[stage] ...``
lines (stderr is not a terminal here; on one they are transient bars) are not counted.

Cases that fail in code outside the loaders are marked ``xfail(strict=True)`` with the
current behaviour; when the owner fixes them the strict xfail turns into a failure that
says: drop the mark.
"""

from __future__ import annotations

import copy
import hashlib
import os
import random
import re
import sys
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from srprune.cli import main

WEIGHTS_X4 = Path(__file__).resolve().parent.parent / "srprune" / "weights" / "drn-t-x4.pt"
WEIGHTS_X8 = WEIGHTS_X4.with_name("drn-t-x8.pt")
SMALL = ["--input-size", "8", "8"]  # info/bench: a tiny LR input
FAST = ["--preset", "fast", "--calib-batches", "1", "--calib-batch", "1", "--calib-patch", "8"]
BENCH = ["--runs", "1", "--warmup", "0", *SMALL]
TRAIN = ["--steps", "1", "--batch", "1", "--patch", "8"]


# ------------------------------------------------------------------ code-carrying pickles


class Evil:
    """Any class pickles as a GLOBAL (module.qualname): loading it would import code."""

    def __init__(self) -> None:
        self.payload = torch.zeros(1)


class ShellPayload:
    """The classic: unpickling calls ``os.system``; it would leave a file ``pwned``."""

    def __reduce__(self) -> tuple:
        return (os.system, ("touch pwned",))


# ------------------------------------------------------------------ shared valid files


@dataclass
class Assets:
    artifact: dict[str, Any]  # a valid pruned drn-t x4 artifact, as read back (tensors)
    artifact_bytes: bytes
    weights: dict[str, Any]  # the shipped drn-t x4 weights file


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Assets:
    from srprune.api import compress_model
    from srprune.models import build_model
    from srprune.models.artifacts import save_artifact

    model = build_model("drn-t", 4)
    compress_model(model, 0.3)
    path = tmp_path_factory.mktemp("assets") / "pruned.srp"
    save_artifact(model, path)
    return Assets(artifact=torch.load(path, weights_only=True), artifact_bytes=path.read_bytes(),
                  weights=torch.load(WEIGHTS_X4, weights_only=True))


# ------------------------------------------------------------------ file makers
# A maker is ``make(path, assets)``: it creates ``path`` (a file or a folder).

Maker = Callable[[Path, Assets], None]


def empty() -> Maker:
    return lambda p, a: p.write_bytes(b"")


def raw(data: bytes) -> Maker:
    return lambda p, a: p.write_bytes(data)


def text(content: str) -> Maker:
    return lambda p, a: p.write_text(content)


def random_bytes(n: int = 4096, seed: int = 0) -> Maker:
    return lambda p, a: p.write_bytes(random.Random(seed).randbytes(n))


def saved(build: Callable[[Assets], Any]) -> Maker:
    """``torch.save`` of whatever ``build(assets)`` returns."""
    return lambda p, a: torch.save(build(a), p)


def artifact(mutate: Callable[[dict], Any] | None = None) -> Maker:
    """The valid artifact, optionally changed in place by ``mutate`` (a tampered file)."""

    def make(p: Path, a: Assets) -> None:
        if mutate is None:
            p.write_bytes(a.artifact_bytes)
            return
        data = copy.deepcopy(a.artifact)
        mutate(data)
        torch.save(data, p)

    return make


def truncated_artifact(keep: float = 0.5) -> Maker:
    return lambda p, a: p.write_bytes(a.artifact_bytes[:int(len(a.artifact_bytes) * keep)])


def weights(mutate: Callable[[dict], Any] | None = None) -> Maker:
    def make(p: Path, a: Assets) -> None:
        data = copy.deepcopy(a.weights)
        if mutate is not None:
            mutate(data)
        torch.save(data, p)

    return make


def copy_of(source: Path) -> Maker:
    return lambda p, a: p.write_bytes(source.read_bytes())


def image(mode: str = "RGB", size: tuple[int, int] = (48, 48), fmt: str | None = None) -> Maker:
    """A noise image in ``mode`` (``"I;16"``: 16-bit grey)."""

    def make(p: Path, a: Assets) -> None:
        rng = np.random.default_rng(0)
        w, h = size
        if mode == "I;16":
            im = Image.fromarray(rng.integers(0, 65535, (h, w), dtype=np.uint16))
        else:
            im = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).convert(mode)
        im.save(p, format=fmt)

    return make


def png_header(width: int, height: int) -> Maker:
    """A PNG whose header claims ``width`` x ``height`` (a decompression bomb), no pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    data = (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return raw(data)


def folder(**files: Maker) -> Maker:
    """A folder holding ``files`` (``name=maker``; ``__`` in a name stands for ``/``)."""

    def make(p: Path, a: Assets) -> None:
        p.mkdir()
        for name, maker in files.items():
            target = p / name.replace("__", "/")
            target.parent.mkdir(parents=True, exist_ok=True)
            maker(target, a)

    return make


def rgb_folder() -> Maker:
    return folder(**{"a.png": image()})


# ------------------------------------------------------------------ tampering helpers


def setitem(path: str, value: Any) -> Callable[[dict], None]:
    """``setitem("state_dict/head.weight", x)``: set a nested key (``None`` value: delete)."""

    def mutate(data: dict) -> None:
        *parents, last = path.split("/")
        for key in parents:
            data = data[int(key)] if isinstance(data, list) else data[key]
        if isinstance(data, list):
            last = int(last)
        if value is _DELETE:
            del data[last]
        else:
            data[last] = value() if callable(value) else value

    return mutate


_DELETE = object()


def reshape_head(data: dict) -> None:
    """head conv 3 -> 5 channels instead of 8: it no longer feeds ``down.0`` (8 in)."""
    data["state_dict"]["head.weight"] = torch.zeros(5, 3, 3, 3)
    data["state_dict"]["head.bias"] = torch.zeros(5)


def flat_weight(data: dict) -> None:
    data["state_dict"]["head.weight"] = torch.zeros(216)


def zero_width(data: dict) -> None:
    """The first RCAB of stage 0 keeps no channel at all."""
    sd = data["state_dict"]
    sd["up_blocks.0.0.body.0.weight"] = torch.zeros(0, 32, 3, 3)
    sd["up_blocks.0.0.body.0.bias"] = torch.zeros(0)
    sd["up_blocks.0.0.body.2.weight"] = torch.zeros(32, 0, 3, 3)


def complex_weight(data: dict) -> None:
    w = data["state_dict"]["head.weight"]
    data["state_dict"]["head.weight"] = torch.complex(w, w)


def duals_of_wrong_shape(data: dict) -> None:
    data["duals"][0]["dual_module.0.0.weight"] = torch.zeros(8, 5, 3, 3)


# ------------------------------------------------------------------ the cases


@dataclass
class Case:
    args: list[str]
    files: dict[str, Maker] = field(default_factory=dict)
    code: int = 2
    message: str = ""  # a part of the error line
    patch: Callable[[pytest.MonkeyPatch], None] | None = None
    skip: str = ""  # a reason to skip on this machine
    may_leave: set[str] = field(default_factory=set)  # new files a failure may keep (resume)
    must_leave: set[str] = field(default_factory=set)  # ... and must (a missed target's model)
    pattern: str = ""  # a regular expression the line must match, beyond ``message``


def disk_full(monkeypatch: pytest.MonkeyPatch) -> None:
    def full(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        Path(f).write_bytes(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full)


def interrupt_in_save(monkeypatch: pytest.MonkeyPatch) -> None:
    def stop(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        Path(f).write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", stop)


def interrupt(target: str) -> Callable[[pytest.MonkeyPatch], None]:
    """Ctrl-C inside ``module:attribute`` (a function the command calls)."""
    module, name = target.split(":")

    def patch(monkeypatch: pytest.MonkeyPatch) -> None:
        def stop(*args: Any, **kwargs: Any) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(f"{module}.{name}", stop)

    return patch


# what torch.save raises when the disk fills: the zip writer's C++ check, the OS error lost
TORCH_FULL = "[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"
TORCH_WRITE_FAILED = ("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed "
                      "writing file data/0: file write failed")


def torch_writer_fails(message: str = TORCH_FULL, free: int | None = 0
                       ) -> Callable[[pytest.MonkeyPatch], None]:
    """``torch.save`` fails as torch's zip writer does, after writing part of the file, on a
    filesystem with ``free`` bytes left (None: as the folder really has)."""

    def patch(monkeypatch: pytest.MonkeyPatch) -> None:
        def fail(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
            Path(f).write_bytes(b"half a file")
            raise RuntimeError(message)

        monkeypatch.setattr(torch, "save", fail)
        if free is not None:
            monkeypatch.setattr("srprune.io.checkpoint._free_bytes", lambda folder: free)

    return patch


def onnx_disk_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ONNX exporter's file write hits a full disk (what a real full tmpfs gives)."""

    def full(model: Any, args: Any, f: Any, *a: Any, **k: Any) -> None:
        Path(f).write_bytes(b"half a model")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch.onnx, "export", full)


# the messages torch, numpy and CUDA give when an allocation fails
CPU_OOM = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
           "memory: you tried to allocate 3072000000 bytes. Error code 12 (Cannot allocate "
           "memory)")
NUMPY_OOM = ("Unable to allocate 2.86 GiB for an array with shape (1, 48, 4000, 4000) and data "
             "type float32")
CUDA_OOM = ("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.15 GiB total capacity; "
            "77.01 GiB already allocated)")


def out_of_memory(target: str, exc: BaseException) -> Callable[[pytest.MonkeyPatch], None]:
    """``module:attribute`` (a function the command calls) raises ``exc``."""

    def patch(monkeypatch: pytest.MonkeyPatch) -> None:
        def fail(*args: Any, **kwargs: Any) -> None:
            raise exc

        monkeypatch.setattr(target.replace(":", "."), fail)

    return patch


def sr_out_of_memory(exc: BaseException) -> Callable[[pytest.MonkeyPatch], None]:
    """The evaluation's SR function runs out of memory on the first image it is given."""

    def patch(monkeypatch: pytest.MonkeyPatch) -> None:
        def sr_function(*args: Any, **kwargs: Any) -> Callable[[Any], Any]:
            def run(lr: Any) -> Any:
                raise exc

            return run

        monkeypatch.setattr("srprune.quality.evaluate.sr_function", sr_function)

    return patch


def latency_world(faster: bool = True, fake_table: bool = False
                  ) -> Callable[[pytest.MonkeyPatch], None]:
    """ORT's timings replaced by a MAC count, so a latency search takes seconds: every conv
    is 1 ms per 100 k MACs, the profile is all convs, and a model times end to end as the sum
    of its convs (the prediction is exact: the target is met), or, unless ``faster``, every
    model as the unpruned one (pruning did not make it faster: the target is missed). The
    latency cache lies next to the case's folder (it is rewritten: not a file of the
    user's). ``fake_table``: the cache holds a table of this machine, every entry 1e-9 ms."""

    def patch(monkeypatch: pytest.MonkeyPatch) -> None:
        import json

        from torch import nn

        from srprune.measure.latency_table import (
            ConvShape,
            LatencyTable,
            conv_inputs,
            machine_key,
        )
        from srprune.measure.profile import TimeSplit
        from srprune.search.latency import LatencyTarget

        def conv_ms(shape: ConvShape) -> float:
            return 0.01 + shape.macs() / 1e5

        def model_ms(model: Any, size: tuple[int, int]) -> float:
            sizes = conv_inputs(model.net, size)
            return sum(conv_ms(ConvShape.of(m, m.in_channels, m.out_channels, s))
                       for name, m in model.net.named_modules() if isinstance(m, nn.Conv2d)
                       for s in sizes.get(name, []))

        def measure(self: Any, *models: Any, input_size: Any = None) -> Any:
            size = tuple(input_size or self.report["input_size"])
            first = model_ms(models[0], size)
            times = [first] + [model_ms(m, size) if faster else first for m in models[1:]]
            return times[0] if len(times) == 1 else times

        cache = Path.cwd().parent / f"{Path.cwd().name}-latency-cache"
        cache.mkdir(exist_ok=True)
        monkeypatch.setenv("SRPRUNE_CACHE_DIR", str(cache))
        monkeypatch.setattr(LatencyTable, "_measure_ort", lambda self, shape: conv_ms(shape))
        monkeypatch.setattr("srprune.search.latency.profile_split",
                            lambda *a, **k: TimeSplit(conv=1.0, width_scaled=0.0, fixed=0.0))
        monkeypatch.setattr(LatencyTarget, "_measure", measure)
        if fake_table:
            table = LatencyTable(1, sample=0)
            keys = [ConvShape(c, c, (3, 3), (1, 1), (1, 1), (1, 1), 1, (16, 16)).key()
                    for c in (8, 16, 32)]
            table.path.write_text(json.dumps({"format": "srprune-latency-table",
                                              "machine": machine_key(1),
                                              "entries": dict.fromkeys(keys, 1e-9)}))

    return patch


LATENCY = ["--strategy", "latency", "--speedup", "1.5", "--input-size", "16", "16",
           "--strategy-opt", "align=1", "--strategy-opt", "refine=0"]


def xfail(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, reason=reason)


def _big_memory() -> bool:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") > 100e9
    except (ValueError, OSError):
        return True


ART = {"model.srp": artifact()}
OUT = ["--out", "out.srp"]

CASES = [
    # ---------------------------------------------------------------- main / list
    pytest.param(Case(["nope"], message="No such command 'nope'"), id="main-unknown-command"),
    pytest.param(Case(["--bogus"], message="No such option"), id="main-unknown-option"),
    pytest.param(Case(["list"], message="Missing argument"), id="list-missing-kind"),
    pytest.param(Case(["list", "widgets"], message="Invalid value"), id="list-unknown-kind"),
    pytest.param(Case(["list", "models", "--bogus"], message="No such option"),
                 id="list-unknown-option"),
    pytest.param(Case(["list", "models", "extra"], message="unexpected extra argument"),
                 id="list-extra-argument"),
    # ---------------------------------------------------------------- info: the model file
    pytest.param(Case(["info", "missing.srp"], message="not found"), id="info-missing-file"),
    pytest.param(Case(["info", "empty.srp"], {"empty.srp": empty()}, message="the file is empty"),
                 id="info-empty-file"),
    pytest.param(Case(["info", "cut.srp"], {"cut.srp": truncated_artifact()},
                      message="not a readable checkpoint"), id="info-truncated-artifact"),
    pytest.param(Case(["info", "noise.srp"], {"noise.srp": random_bytes()},
                      message="noise.srp is not a readable checkpoint"), id="info-random-bytes"),
    pytest.param(Case(["info", "noise.pt"], {"noise.pt": random_bytes(5, seed=1)},
                      message="noise.pt is not a readable checkpoint"),
                 id="info-five-random-bytes"),
    pytest.param(Case(["info", "dir.srp"], {"dir.srp": folder()}, message="is a folder"),
                 id="info-folder-as-model"),
    pytest.param(Case(["info", "evil.srp"], {"evil.srp": saved(lambda a: Evil())},
                      message="pickled Python code"), id="info-code-carrying-object"),
    pytest.param(Case(["info", "evil.srp"], {"evil.srp": artifact(setitem("meta", ShellPayload))},
                      message="pickled Python code"), id="info-code-carrying-os-system"),
    pytest.param(Case(["info", "foreign.pt"],
                      {"foreign.pt": saved(lambda a: {"conv.weight": torch.zeros(8, 3, 3, 3)})},
                      message="no architecture matches"), id="info-foreign-state-dict-as-model"),
    pytest.param(Case(["info", "list.srp"], {"list.srp": saved(lambda a: [1, 2, 3])},
                      message="list.srp"), id="info-list-as-model"),
    pytest.param(Case(["info", "new.srp"], {"new.srp": artifact(setitem("version", 99))},
                      message="newer srprune"), id="info-artifact-from-the-future"),
    pytest.param(Case(["info", "t.srp"], {"t.srp": artifact(setitem("state_dict", "weights"))},
                      message="'state_dict' is not a dict"), id="info-artifact-state-dict-string"),
    pytest.param(Case(["info", "t.srp"],
                      {"t.srp": artifact(setitem("state_dict/head.weight", "abc"))},
                      message="non-tensors"), id="info-artifact-tensor-is-a-string"),
    pytest.param(Case(["info", "t.srp"], {"t.srp": artifact(reshape_head)},
                      message="t.srp: damaged artifact: its layers do not fit together at "
                              "layer down.0"),
                 id="info-artifact-shapes-disagree-with-config"),
    pytest.param(Case(["info", "t.srp"], {"t.srp": artifact(flat_weight)},
                      message="head.weight has shape (216,)"),
                 id="info-artifact-conv-weight-1d"),
    pytest.param(Case(["info", "t.srp"], {"t.srp": artifact(zero_width)},
                      message="empty dimension"),
                 id="info-artifact-zero-width-layer"),
    pytest.param(Case(["info", "t.srp"], {"t.srp": artifact(complex_weight)},
                      message="needs floating point"),
                 id="info-artifact-complex-weights"),
    pytest.param(Case(["info", "t.srp"],
                      {"t.srp": artifact(setitem("state_dict/head.weight", _DELETE))},
                      message="head.weight"), id="info-artifact-missing-key"),
    pytest.param(Case(["info", "t.srp"],
                      {"t.srp": artifact(setitem("state_dict/extra.weight", torch.zeros(1)))},
                      message="extra.weight"), id="info-artifact-extra-key"),
    pytest.param(Case(["info", "t.srp"],
                      {"t.srp": artifact(lambda d: d["state_dict"].update({7: torch.ones(1)}))},
                      message="not a name: 7"), id="info-artifact-integer-key"),
    pytest.param(Case(["info", "t.srp"],
                      {"t.srp": artifact(lambda d: d.update(name="gan-9000", arch="gan"))},
                      message="not registered"), id="info-artifact-unknown-model"),
    pytest.param(Case(["info", "t.srp"], {"t.srp": artifact(setitem("config/bogus", 1))},
                      message="t.srp: damaged artifact:"),
                 id="info-artifact-config-unknown-key"),
    pytest.param(Case(["info", "t.srp"], {"t.srp": artifact(setitem("config/n_feats", -8))},
                      message="does not build 'drn-t'"), id="info-artifact-config-negative-width"),
    pytest.param(Case(["info", "t.srp"],
                      {"t.srp": artifact(setitem("config/n_feats", 10**6))},
                      message="refusing to build it"), id="info-artifact-config-huge"),
    pytest.param(Case(["info", "t.srp"], {"t.srp": artifact(setitem("config/scale", 3))},
                      message="config says x3"), id="info-artifact-config-scale-3"),
    pytest.param(Case(["info", "t.srp"], {"t.srp": artifact(setitem("scale", 8))},
                      message="scale x8 but its config says x4"),
                 id="info-artifact-scale-disagrees-with-config"),
    pytest.param(Case(["info", "t.srp"], {"t.srp": artifact(setitem("plan", [1, 2]))},
                      message="'plan' is not a dict"), id="info-artifact-plan-is-a-list"),
    pytest.param(Case(["info", "t.srp"], {"t.srp": artifact(setitem("duals", "abc"))},
                      message="'duals'"), id="info-artifact-duals-string"),
    pytest.param(Case(["info", "t.srp"], {"t.srp": artifact(setitem("duals", []))},
                      message="dual nets"), id="info-artifact-no-dual-nets"),
    pytest.param(Case(["info", "t.srp"], {"t.srp": artifact(duals_of_wrong_shape)},
                      message="do not fit together at layer dual net 0"),
                 id="info-artifact-dual-shapes-disagree"),
    pytest.param(Case(["info", "model.srp", "--scale", "8"], ART, message="x4 model"),
                 id="info-artifact-wrong-scale"),
    # ---------------------------------------------------------------- info: names, options
    pytest.param(Case(["info", "drn-x"], message="unknown model 'drn-x'"),
                 id="info-unknown-model"),
    pytest.param(Case(["info", "drn-t", "--scale", "3"], message="does not support scale 3"),
                 id="info-unsupported-scale"),
    pytest.param(Case(["info", "drn-t", "--scale", "abc"], message="Invalid value"),
                 id="info-scale-not-a-number"),
    pytest.param(Case(["info", "drn-t", "--input-size", "0", "0"], message="too small"),
                 id="info-input-size-zero"),
    pytest.param(Case(["info", "drn-t", "--input-size", "abc", "8"], message="Invalid value"),
                 id="info-input-size-not-a-number"),
    pytest.param(Case(["info", "drn-t", "--input-size", "8"], message="requires 2 arguments"),
                 id="info-input-size-one-number"),
    # ---------------------------------------------------------------- info: --weights
    pytest.param(Case(["info", "drn-t", "--weights", "missing.pt"], message="not found"),
                 id="info-weights-missing"),
    pytest.param(Case(["info", "drn-t", "--weights", "w.pt"], {"w.pt": empty()},
                      message="w.pt is not a readable checkpoint (the file is empty)"),
                 id="info-weights-empty"),
    pytest.param(Case(["info", "drn-t", "--weights", "w.pt"], {"w.pt": random_bytes(seed=2)},
                      message="w.pt is not a readable checkpoint"), id="info-weights-random-bytes"),
    pytest.param(Case(["info", "drn-t", "--weights", "w.pt"],
                      {"w.pt": saved(lambda a: {"net": Evil()})},
                      message="pickled Python code"), id="info-weights-code-carrying"),
    pytest.param(Case(["info", "drn-t", "--weights", "w.pt"],
                      {"w.pt": saved(lambda a: {"net": {"k": 3}})},
                      message="w.pt: state_dict holds non-tensors (k: int)"),
                 id="info-weights-net-holds-an-int"),
    pytest.param(Case(["info", "drn-t", "--weights", "w.pt"],
                      {"w.pt": weights(setitem("net/head.weight", 3))}, message="head.weight"),
                 id="info-weights-one-int-among-tensors"),
    pytest.param(Case(["info", "drn-t", "--weights", "w.pt"],
                      {"w.pt": weights(setitem("duals", "abc"))}, message="'duals' is not a list"),
                 id="info-weights-duals-string"),
    pytest.param(Case(["info", "drn-t", "--weights", "w.pt"],
                      {"w.pt": weights(setitem("duals/0", [1, 2]))},
                      message="'duals' is not a list"),
                 id="info-weights-dual-is-a-list"),
    pytest.param(Case(["info", "drn-t", "--weights", "w.pt"],
                      {"w.pt": weights(setitem("net/head.weight",
                                               lambda: torch.zeros(8, 3, 3, 3,
                                                                   dtype=torch.int64)))},
                      message="torch.int64"), id="info-weights-integer-tensor"),
    pytest.param(Case(["info", "drn-t", "--weights", "w.pt"],
                      {"w.pt": saved(lambda a: [torch.zeros(1)])},
                      message="not a weights file"), id="info-weights-list"),
    pytest.param(Case(["info", "drn-t", "--weights", "x8.pt"], {"x8.pt": copy_of(WEIGHTS_X8)},
                      message="x8.pt: has 3 dual nets"), id="info-weights-of-another-scale"),
    pytest.param(Case(["info", "model.srp", "--weights", "w.pt"],
                      {**ART, "w.pt": weights()}, message="shape mismatches"),
                 id="info-unpruned-weights-into-pruned-artifact"),
    pytest.param(Case(["info", "drn-t", "--weights", "model.srp"], ART,
                      message="not a weights file"), id="info-weights-is-an-artifact"),
    # ---------------------------------------------------------------- info: --channels
    pytest.param(Case(["info", "drn-s", "--channels", "missing.txt"], message="missing.txt"),
                 id="info-channels-missing"),
    pytest.param(Case(["info", "drn-s", "--channels", "c.txt"], {"c.txt": empty()},
                      message="0 lines, expected 64"), id="info-channels-empty"),
    pytest.param(Case(["info", "drn-s", "--channels", "c.txt"],
                      {"c.txt": text("16\n" * 63 + "x\n")},
                      message="line 64 is not an integer"), id="info-channels-not-a-number"),
    pytest.param(Case(["info", "drn-s", "--channels", "c.txt"], {"c.txt": text("0\n" * 64)},
                      message="outside 1..16"), id="info-channels-zero-width"),
    pytest.param(Case(["info", "drn-s", "--channels", "c.txt"],
                      {"c.txt": random_bytes(512, seed=3)}, message="c.txt: not a text file"),
                 id="info-channels-random-bytes"),
    pytest.param(Case(["info", "model.srp", "--channels", "c.txt"],
                      {**ART, "c.txt": text("4\n")}, message="--channels applies"),
                 id="info-channels-with-an-artifact"),
    # ---------------------------------------------------------------- compress: options
    pytest.param(Case(["compress", "drn-t", *OUT], message="--ratio is required"),
                 id="compress-no-ratio"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "1.5", *OUT], message="outside [0, 1)"),
                 id="compress-ratio-1.5"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "-0.1", *OUT], message="outside [0, 1)"),
                 id="compress-ratio-negative"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "nan", *OUT], message="outside [0, 1)"),
                 id="compress-ratio-nan"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "abc", *OUT], message="Invalid value"),
                 id="compress-ratio-abc"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5"], message="--out"),
                 id="compress-no-out"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", "--criterion", "dr",
                       "--data", "builtin", "--criterion-opt", "gamma=abc", *OUT],
                      message="gamma"), id="compress-criterion-opt-gamma-abc"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", "--criterion-opt", "bogus=1",
                       *OUT], message="bogus"), id="compress-criterion-opt-bogus"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", "--criterion-opt", "novalue",
                       *OUT], message="KEY=VALUE"), id="compress-criterion-opt-no-equals"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", "--strategy", "dr-search",
                       "--data", "builtin", "--strategy-opt", "alpha_lr=abc", *OUT],
                      message="alpha_lr"), id="compress-strategy-opt-alpha-lr-abc"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", "--strategy-opt", "bogus=1",
                       *OUT], message="bogus"), id="compress-strategy-opt-bogus"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", "--finetune-steps", "-5", *OUT],
                      message="--finetune-steps"), id="compress-finetune-steps-negative"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", "--finetune-steps", "1", *OUT],
                      message="--data"), id="compress-finetune-without-data"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", "--calib-batches", "0", *OUT],
                      message="--calib-batches"), id="compress-calib-batches-0"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", "--finetune-lr", "0", *OUT],
                      message="--finetune-lr"), id="compress-finetune-lr-0"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", "--dual-weight", "-1", *OUT],
                      message="--dual-weight"), id="compress-dual-weight-negative"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", "--criterion", "nope", *OUT],
                      message="unknown criterion 'nope'"), id="compress-unknown-criterion"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", "--strategy", "nope", *OUT],
                      message="unknown strategy 'nope'"), id="compress-unknown-strategy"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", "--preset", "quick", *OUT],
                      message="Invalid value"), id="compress-unknown-preset"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", "--scope", "trunk", *OUT],
                      message="Invalid value"), id="compress-unknown-scope"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", "--scale", "3", *OUT],
                      message="does not support scale 3"), id="compress-unknown-scale"),
    pytest.param(Case(["compress", "drn-x", "--ratio", "0.5", *OUT],
                      message="unknown model 'drn-x'"), id="compress-unknown-model"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", "--criterion", "dr", *OUT],
                      message="--data"), id="compress-data-criterion-without-data"),
    # ---------------------------------------------------------------- compress: files
    pytest.param(Case(["compress", "evil.srp", "--ratio", "0.5", *OUT],
                      {"evil.srp": artifact(setitem("meta", ShellPayload))},
                      message="pickled Python code"), id="compress-code-carrying-artifact"),
    pytest.param(Case(["compress", "t.srp", "--ratio", "0.5", *OUT],
                      {"t.srp": artifact(reshape_head)}, message="do not fit together"),
                 id="compress-tampered-artifact"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", "--weights", "w.pt", *OUT],
                      {"w.pt": saved(lambda a: {"net": {"k": 3}})}, message="non-tensors"),
                 id="compress-weights-net-holds-an-int"),
    pytest.param(Case(["compress", "drn-t", "--strategy", "from-file", "--plan", "missing.json",
                       *OUT], message="missing.json"), id="compress-plan-missing"),
    pytest.param(Case(["compress", "drn-t", "--strategy", "from-file", "--plan", "p.json", *OUT],
                      {"p.json": text('{"units": null}')}, message="p.json: not a plan"),
                 id="compress-plan-units-null"),
    pytest.param(Case(["compress", "drn-t", "--strategy", "from-file", "--plan", "p.json", *OUT],
                      {"p.json": text('{"units": 5}')}, message="p.json: not a plan"),
                 id="compress-plan-units-number"),
    pytest.param(Case(["compress", "drn-t", "--strategy", "from-file", "--plan", "p.json", *OUT],
                      {"p.json": text('{"units": {"head": 3}}')},
                      message="not a prunable unit"), id="compress-plan-unknown-unit"),
    pytest.param(Case(["compress", "drn-t", "--strategy", "from-file", "--plan", "p.json", *OUT],
                      {"p.json": text('{"units": {"down.0.dual_module.0.0": true}}')},
                      message="not an integer"), id="compress-plan-width-true"),
    pytest.param(Case(["compress", "drn-t", "--strategy", "from-file", "--plan", "p.json", *OUT],
                      {"p.json": text('{"units": {"down.0.dual_module.0.0": 999}}')},
                      message="outside 1..8"), id="compress-plan-width-too-big"),
    pytest.param(Case(["compress", "drn-t", "--strategy", "from-file", "--plan", "p.json", *OUT],
                      {"p.json": text('{"units": ' * 100000)}, message="p.json: not a plan"),
                 id="compress-plan-deeply-nested-json"),
    pytest.param(Case(["compress", "drn-t", "--strategy", "from-file", "--plan", "p.txt", *OUT],
                      {"p.txt": text("4\n4\n")}, message="2 lines"),
                 id="compress-plan-text-wrong-line-count"),
    pytest.param(Case(["compress", "drn-t", "--strategy", "from-file", "--plan", "p.txt", *OUT],
                      {"p.txt": random_bytes(300, seed=4)}, message="not a text file"),
                 id="compress-plan-random-bytes"),
    pytest.param(Case(["compress", "drn-t", "--strategy", "from-file", "--plan", "p", *OUT],
                      {"p": folder()}, message="cannot read plan p"),
                 id="compress-plan-is-a-folder"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.999", "--scope", "internal", *OUT],
                      message="--scope all also prunes the trunks"),
                 id="compress-ratio-out-of-reach"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", "--round-to", "0", *OUT],
                      message="round_to"), id="compress-round-to-0"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", *LATENCY, *OUT],
                      message="--ratio does not apply to --strategy latency: it takes a "
                              "measured target: --speedup X or --target-latency MS"),
                 id="compress-ratio-with-latency"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", "--strategy", "latency",
                       "--target-latency", "5", *OUT],
                      message="--ratio does not apply to --strategy latency"),
                 id="compress-ratio-with-latency-target-ms"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", "--strategy", "from-file",
                       "--plan", "p.json", *OUT], {"p.json": text('{"units": {}}')},
                      message="--ratio does not apply to --strategy from-file"),
                 id="compress-ratio-with-from-file"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", "--allow-miss", *OUT],
                      message="--allow-miss goes with --strategy latency"),
                 id="compress-allow-miss-without-latency"),
    # ---------------------------------------------------------------- compress: images
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", "--data", "missing", *FAST, *OUT],
                      message="missing"), id="compress-data-missing"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", "--data", "d", *FAST, *OUT],
                      {"d": folder()}, message="no images"), id="compress-data-empty-folder"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", "--data", "d", *FAST, *OUT],
                      {"d": folder(**{"a.png": text("not an image")})},
                      message="cannot read image"), id="compress-data-text-named-png"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", "--data", "d", *FAST, *OUT],
                      {"d": folder(**{"a.png": image(size=(1, 1))})}, message="1x1"),
                 id="compress-data-1x1-image"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", "--data", "a.png", *FAST, *OUT],
                      {"a.png": image()}, message="a.png"), id="compress-data-is-a-file"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", "--data", "d", *FAST,
                       "--finetune-steps", "1", "--finetune-patch", "64", *OUT],
                      {"d": rgb_folder()}, message="smaller than the HR patch"),
                 id="compress-finetune-patch-larger-than-images"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", "--eval", "d", *OUT],
                      {"d": folder()}, message="no images"), id="compress-eval-empty-folder"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", "--eval", "d", *OUT],
                      {"d": folder(**{"a.png": image(size=(1, 1))})}, message="1x1"),
                 id="compress-eval-1x1-image"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", "--eval", "d", *OUT],
                      {"d": folder(**{"a.png": png_header(100_000, 100_000)})},
                      message="a.png"), id="compress-eval-decompression-bomb"),
    # ---------------------------------------------------------------- compress: outputs
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", *OUT], {"out.srp": text("keep")},
                      message="already exists"), id="compress-out-exists"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", "--out", "f/x.srp"],
                      {"f": text("a file")}, message="f is a file, not a folder"),
                 id="compress-out-under-a-file"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", "--out", "nodir/x.srp"],
                      message="does not exist"), id="compress-out-missing-folder"),
    pytest.param(Case(["compress", "model.srp", "--ratio", "0.5", "--out", "model.srp"], ART,
                      message="already exists"), id="compress-out-is-the-input"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", "--out", "d"], {"d": folder()},
                      message="d is a folder"), id="compress-out-is-a-folder"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", *OUT], patch=disk_full,
                      message="No space left on device"), id="compress-disk-full"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", *OUT], patch=torch_writer_fails(),
                      message="cannot write out.srp: No space left on device (0 bytes free)"),
                 id="compress-disk-full-torch-writer"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", *OUT],
                      patch=torch_writer_fails(TORCH_WRITE_FAILED, free=None),
                      message="cannot write out.srp: the write failed (PytorchStreamWriter "
                              "failed writing file data/0: file write failed)"),
                 id="compress-write-failed-torch-writer"),
    pytest.param(Case(["compress", "drn-t", *LATENCY, *OUT], code=3,
                      patch=latency_world(faster=False),
                      message="latency target NOT met (measured speed-up 1.00x, target 1.5x; "
                              "1 thread(s), 16x16 LR); the report is printed and the pruned "
                              "model written to out.srp all the same; exit status 3 (pass "
                              "--allow-miss to exit 0)",
                      may_leave={"out.srp"}, must_leave={"out.srp"}),
                 id="compress-latency-target-missed"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", *OUT], code=130,
                      patch=interrupt("srprune.api:compress"), message="interrupted"),
                 id="compress-interrupted-while-pruning"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", *OUT], code=130,
                      patch=interrupt_in_save, message="interrupted"),
                 id="compress-interrupted-while-writing"),
    # ---------------------------------------------------------------- bench
    pytest.param(Case(["bench"], message="Missing argument"), id="bench-no-model"),
    pytest.param(Case(["bench", "drn-x", *BENCH], message="unknown model 'drn-x'"),
                 id="bench-unknown-model"),
    pytest.param(Case(["bench", "missing.srp", *BENCH], message="not found"),
                 id="bench-missing-file"),
    pytest.param(Case(["bench", "evil.srp", *BENCH], {"evil.srp": saved(lambda a: Evil())},
                      message="pickled Python code"), id="bench-code-carrying-artifact"),
    pytest.param(Case(["bench", "t.srp", *BENCH], {"t.srp": artifact(reshape_head)},
                      message="do not fit together"), id="bench-tampered-artifact"),
    pytest.param(Case(["bench", "model.srp", "--scale", "8", *BENCH], ART, message="x4 model"),
                 id="bench-artifact-wrong-scale"),
    pytest.param(Case(["bench", "drn-t", "--threads", "0", *BENCH], message="--threads"),
                 id="bench-threads-0"),
    pytest.param(Case(["bench", "drn-t", "--threads", "abc", *BENCH], message="--threads"),
                 id="bench-threads-abc"),
    pytest.param(Case(["bench", "drn-t", "--runs", "0", "--input-size", "8", "8"],
                      message="--runs"), id="bench-runs-0"),
    pytest.param(Case(["bench", "drn-t", "--runs", "1", "--warmup", "-1"], message="--warmup"),
                 id="bench-warmup-negative"),
    pytest.param(Case(["bench", "drn-t", "--runs", "1", "--input-size", "0", "0"],
                      message="too small"), id="bench-input-size-zero"),
    pytest.param(Case(["bench", "drn-t", "--runs", "1", "--warmup", "0", "--input-size",
                       "100000", "100000"], message="100000",
                      skip="needs a machine that cannot allocate 120 GB" if _big_memory()
                      else ""),
                 id="bench-input-size-100000"),
    pytest.param(Case(["bench", "drn-t", "--scale", "3", *BENCH],
                      message="does not support scale 3"), id="bench-unsupported-scale"),
    pytest.param(Case(["bench", "drn-t", "--onnx-out", "f", *BENCH], {"f": text("a file")},
                      message="f"), id="bench-onnx-out-is-a-file"),
    pytest.param(Case(["bench", "drn-t", "--onnx-out", "o", *BENCH],
                      {"o": folder(**{"drn-t-x4.onnx": text("old")})}, message="already exists"),
                 id="bench-onnx-out-exists"),
    pytest.param(Case(["bench", "drn-t", *BENCH], code=130,
                      patch=interrupt("srprune.measure.bench:benchmark"),
                      message="interrupted"), id="bench-interrupted"),
    pytest.param(Case(["bench", "drn-t", "--runs", "1", "--warmup", "0", "--input-size", "4000",
                       "4000"], patch=out_of_memory("srprune.measure.bench:benchmark",
                                                    RuntimeError(CPU_OOM)),
                      message="out of memory at --input-size 4000 4000: tried to allocate "
                              "3.07 GB with",
                      pattern=r"; --input-size (\d+) \1 or smaller should fit"),
                 id="bench-out-of-memory"),
    pytest.param(Case(["bench", "drn-t", "--runs", "1", "--warmup", "0", "--input-size", "4000",
                       "3000"], patch=out_of_memory("srprune.measure.bench:benchmark",
                                                    MemoryError(NUMPY_OOM)),
                      message="out of memory at --input-size 4000 3000: tried to allocate "
                              "3.07 GB", pattern=r"--input-size \d+ \d+ or smaller should fit"),
                 id="bench-out-of-memory-numpy"),
    pytest.param(Case(["info", "drn-t", "--input-size", "4000", "4000"],
                      patch=out_of_memory("srprune.measure.cost:model_cost",
                                          RuntimeError(CPU_OOM)),
                      message="out of memory at --input-size 4000 4000",
                      pattern=r"--input-size \d+ \d+ or smaller should fit"),
                 id="info-out-of-memory"),
    # ---------------------------------------------------------------- train
    pytest.param(Case(["train", "drn-t", "--data", "d", *TRAIN], {"d": rgb_folder()},
                      message="--out"), id="train-no-out"),
    pytest.param(Case(["train", "drn-t", "--data", "missing", *TRAIN, *OUT], message="missing"),
                 id="train-data-missing"),
    pytest.param(Case(["train", "drn-t", "--data", "d", *TRAIN, *OUT], {"d": folder()},
                      message="no images"), id="train-data-empty-folder"),
    pytest.param(Case(["train", "drn-t", "--data", "d", *TRAIN, *OUT],
                      {"d": folder(**{"a.png": raw(b"\x89PNG\r\n\x1a\n")})},
                      message="cannot read image"), id="train-data-png-header-only"),
    pytest.param(Case(["train", "drn-t", "--data", "d", *TRAIN, *OUT],
                      {"d": folder(**{"a.png": image(size=(1, 1))})}, message="1x1"),
                 id="train-data-1x1-image"),
    pytest.param(Case(["train", "drn-t", "--data", "d", "--steps", "0", *OUT],
                      {"d": rgb_folder()}, message="--steps"), id="train-steps-0"),
    pytest.param(Case(["train", "drn-t", "--data", "d", "--steps", "abc", *OUT],
                      {"d": rgb_folder()}, message="--steps"), id="train-steps-abc"),
    pytest.param(Case(["train", "drn-t", "--data", "d", "--steps", "1", "--patch", "0", *OUT],
                      {"d": rgb_folder()}, message="patch"), id="train-patch-0"),
    pytest.param(Case(["train", "drn-t", "--data", "d", "--steps", "1", "--batch", "0", *OUT],
                      {"d": rgb_folder()}, message="batch"), id="train-batch-0"),
    pytest.param(Case(["train", "drn-t", "--data", "d", *TRAIN, "--lr", "nan", *OUT],
                      {"d": rgb_folder()}, message="--lr"), id="train-lr-nan"),
    pytest.param(Case(["train", "drn-t", "--data", "d", *TRAIN, "--device", "tpu", *OUT],
                      {"d": rgb_folder()}, message="--device"), id="train-unknown-device"),
    pytest.param(Case(["train", "drn-t", "--data", "d", *TRAIN, "--weights", "w.pt", *OUT],
                      {"d": rgb_folder(), "w.pt": saved(lambda a: {"net": {"k": 3}})},
                      message="non-tensors"), id="train-weights-net-holds-an-int"),
    pytest.param(Case(["train", "evil.srp", "--data", "d", *TRAIN, *OUT],
                      {"d": rgb_folder(), "evil.srp": saved(lambda a: Evil())},
                      message="pickled Python code"), id="train-code-carrying-artifact"),
    pytest.param(Case(["train", "drn-t", "--data", "d", *TRAIN, *OUT],
                      {"d": rgb_folder(), "out.srp": text("keep")}, message="already exists"),
                 id="train-out-exists"),
    pytest.param(Case(["train", "drn-t", "--data", "d", *TRAIN, "--out", "f/w.pt"],
                      {"d": rgb_folder(), "f": text("a file")},
                      message="f is a file, not a folder"),
                 id="train-out-under-a-file"),
    pytest.param(Case(["train", "drn-t", "--data", "d", *TRAIN, "--checkpoint", "c.ckpt",
                       "--resume", *OUT],
                      {"d": rgb_folder(), "c.ckpt": saved(lambda a: {"net": Evil()})},
                      message="pickled Python code"), id="train-resume-code-carrying"),
    pytest.param(Case(["train", "drn-t", "--data", "d", *TRAIN, "--checkpoint", "c.ckpt",
                       "--resume", *OUT],
                      {"d": rgb_folder(), "c.ckpt": random_bytes(seed=5)},
                      message="c.ckpt is not a readable checkpoint"),
                 id="train-resume-random-bytes"),
    pytest.param(Case(["train", "drn-t", "--data", "d", *TRAIN, "--checkpoint", "c.ckpt",
                       "--resume", *OUT],
                      {"d": rgb_folder(),
                       "c.ckpt": saved(lambda a: {"format": "srprune-train-checkpoint"})},
                      message="c.ckpt"), id="train-resume-tampered-checkpoint"),
    pytest.param(Case(["train", "drn-t", "--data", "d", *TRAIN, "--checkpoint", "f/c.ckpt",
                       *OUT], {"d": rgb_folder(), "f": text("a file")},
                      message="f is a file, not a folder"), id="train-checkpoint-under-a-file"),
    pytest.param(Case(["train", "drn-t", "--data", "d", *TRAIN, "--out", "w.pt"],
                      {"d": rgb_folder()}, patch=disk_full, message="No space left on device"),
                 id="train-disk-full"),
    pytest.param(Case(["train", "drn-t", "--data", "d", *TRAIN, "--out", "w.pt"],
                      {"d": rgb_folder()}, patch=torch_writer_fails(),
                      message="No space left on device (0 bytes free)"),
                 id="train-disk-full-torch-writer"),
    pytest.param(Case(["train", "drn-t", "--data", "d", *TRAIN, *OUT], {"d": rgb_folder()},
                      code=130, patch=interrupt("srprune.data.images:PatchSampler.next_batch"),
                      message="interrupted", may_leave={"out.srp.ckpt"}),
                 id="train-interrupted"),
    # ---------------------------------------------------------------- eval
    pytest.param(Case(["eval", "drn-t", "--data", "missing"], message="missing"),
                 id="eval-data-missing"),
    pytest.param(Case(["eval", "drn-t", "--data", "d"], {"d": folder()}, message="no images"),
                 id="eval-data-empty-folder"),
    pytest.param(Case(["eval", "drn-t", "--data", "d"],
                      {"d": folder(**{"a.png": text("not an image")})},
                      message="cannot read image"), id="eval-data-text-named-png"),
    pytest.param(Case(["eval", "drn-t", "--data", "d"],
                      {"d": folder(**{"a.png": image(size=(1, 1))})}, message="1x1"),
                 id="eval-data-1x1-image"),
    pytest.param(Case(["eval", "drn-t", "--data", "d"],
                      {"d": folder(**{"a.png": image(size=(8, 8))})}, message="8x8"),
                 id="eval-data-8x8-image"),
    pytest.param(Case(["eval", "drn-t", "--data", "d"],
                      {"d": folder(**{"a.png": png_header(100_000, 100_000)})},
                      message="a.png"), id="eval-data-decompression-bomb"),
    pytest.param(Case(["eval", "drn-t", "--data", "d"],
                      {"d": folder(**{"HR__a.png": png_header(100_000, 100_000),
                                      "LR_bicubic__X4__ax4.png": image(),
                                      "LR_bicubic__X2__ax2.png": image()})},
                      message="a.png"),
                 id="eval-benchmark-decompression-bomb"),
    pytest.param(Case(["eval", "drn-t", "--data", "d"],
                      {"d": folder(**{"HR__a.png": image(), "LR_bicubic__X2__ax2.png": image()})},
                      message="missing LR folder"), id="eval-benchmark-missing-x4"),
    pytest.param(Case(["eval", "drn-t", "--data", "d"],
                      {"d": folder(**{"HR__a.png": image(),
                                      "LR_bicubic__X4__ax4.png": image(size=(13, 12)),
                                      "LR_bicubic__X2__ax2.png": image(size=(24, 24))})},
                      message="scale mismatch"), id="eval-benchmark-lr-wrong-size"),
    pytest.param(Case(["eval", "drn-t", "--data", "d"],
                      {"d": folder(**{"a.png": image(), "a.jpg": image(fmt="JPEG")})},
                      message="share the name"), id="eval-data-two-files-one-name"),
    pytest.param(Case(["eval", "drn-t", "--weights", "x8.pt", "--data", "d"],
                      {"d": rgb_folder(), "x8.pt": copy_of(WEIGHTS_X8)},
                      message="x8.pt: has 3 dual nets"),
                 id="eval-weights-of-another-scale"),
    pytest.param(Case(["eval", "drn-t", "--data", "d", "--device", "tpu"], {"d": rgb_folder()},
                      message="--device"), id="eval-unknown-device"),
    pytest.param(Case(["eval", "missing.srp"], message="not found"), id="eval-missing-model"),
    pytest.param(Case(["eval", "evil.srp", "--data", "d"],
                      {"d": rgb_folder(), "evil.srp": artifact(setitem("meta", ShellPayload))},
                      message="pickled Python code"), id="eval-code-carrying-artifact"),
    pytest.param(Case(["eval", "drn-t", "--weights", "w.pt", "--data", "d"],
                      {"d": rgb_folder(), "w.pt": truncated_artifact(0.3)},
                      message="w.pt is not a readable checkpoint"),
                 id="eval-weights-truncated"),
    pytest.param(Case(["eval", "drn-t", "--data", "d"], {"d": rgb_folder()}, code=130,
                      patch=interrupt("srprune.quality.evaluate:evaluate_model"),
                      message="interrupted"), id="eval-interrupted"),
    pytest.param(Case(["eval", "drn-t", "--data", "d"], {"d": rgb_folder()},
                      patch=sr_out_of_memory(RuntimeError(CPU_OOM)),
                      message="out of memory at image a (12x12 LR): tried to allocate 3.07 GB",
                      pattern=r"LR inputs of about \d+x\d+ or smaller should fit"),
                 id="eval-out-of-memory"),
    pytest.param(Case(["eval", "drn-t", "--data", "d"], {"d": rgb_folder()},
                      patch=sr_out_of_memory(torch.OutOfMemoryError(CUDA_OOM)),
                      message="out of GPU memory at image a (12x12 LR): tried to allocate "
                              "2.15 GB"), id="eval-out-of-gpu-memory"),
    pytest.param(Case(["eval", "drn-t", "--data", "d"], {"d": rgb_folder()},
                      patch=sr_out_of_memory(MemoryError()),
                      message="out of memory at image a (12x12 LR): an allocation failed"),
                 id="eval-memory-error"),
    # ---------------------------------------------------------------- export
    pytest.param(Case(["export", "drn-t", "--onnx", "o.onnx", "--int8", "--data", "d", *SMALL],
                      {"d": folder(**{"a.png": image(size=(8, 8))})},
                      message="--data d: image a is 8x8, too small to calibrate INT8 at x4: "
                              "calibration needs LR patches of at least 16x16, i.e. images of "
                              "at least 64x64"), id="export-int8-data-one-8x8-image"),
    pytest.param(Case(["export", "drn-t", "--onnx", "o.onnx", "--int8", "--data", "d", *SMALL],
                      {"d": folder(**{f"{c}.png": image(size=(8, 8)) for c in "abcd"})},
                      message="image a is 8x8, too small to calibrate INT8"),
                 id="export-int8-data-folder-of-8x8-images"),
    pytest.param(Case(["export", "drn-t", "--onnx", "o.onnx", "--int8", "--data", "d", *SMALL],
                      {"d": folder(**{"a.png": image(size=(96, 96)),
                                      "b.png": image(size=(40, 72))})},
                      message="image b is 72x40, too small to calibrate INT8"),
                 id="export-int8-data-one-small-among-large"),
    pytest.param(Case(["export", "drn-t", "--onnx", "o.onnx", "--int8", "--data", "d", *SMALL],
                      {"d": folder()}, message="no images"), id="export-int8-data-empty-folder"),
    pytest.param(Case(["export", "drn-t", "--onnx", "o.onnx", *SMALL], patch=onnx_disk_full,
                      message="cannot write o.onnx: No space left on device"),
                 id="export-disk-full"),
    # ---------------------------------------------------------------- compare
    pytest.param(Case(["compare", "drn-t", "--criteria", "l1", "--strategies", "latency",
                       "--out", "g"], message="strategy 'latency' does not take a ratio"),
                 id="compare-latency-strategy"),
    # ---------------------------------------------------------------- accepted: converted
    pytest.param(Case(["eval", "drn-t", "--data", "d"],
                      {"d": folder(**{"a.png": image("I;16")})}, code=0),
                 id="eval-data-16-bit-grey"),
    pytest.param(Case(["eval", "drn-t", "--data", "d"],
                      {"d": folder(**{"a.jpg": image("CMYK", fmt="JPEG")})}, code=0),
                 id="eval-data-cmyk-jpeg"),
    pytest.param(Case(["eval", "drn-t", "--data", "d"],
                      {"d": folder(**{"a.png": image("P")})}, code=0),
                 id="eval-data-palette"),
    pytest.param(Case(["compress", "drn-t", "--ratio", "0.5", "--data", "d", *FAST, *OUT],
                      {"d": folder(**{"a.png": image("RGBA")})}, code=0),
                 id="compress-data-rgba"),
    pytest.param(Case(["info", "plain.pt", *SMALL], {"plain.pt": weights()}, code=0),
                 id="info-plain-weights-as-model-detected"),
    pytest.param(Case(["compress", "drn-t", *LATENCY, "--allow-miss", *OUT], code=0,
                      patch=latency_world(faster=False),
                      message="warning: latency target NOT met (measured speed-up 1.00x, "
                              "target 1.5x; 1 thread(s), 16x16 LR); the report is printed "
                              "and the pruned model written to out.srp all the same",
                      must_leave={"out.srp"}),
                 id="compress-latency-target-missed-allowed"),
    pytest.param(Case(["compress", "drn-t", *LATENCY, *OUT], code=0,
                      patch=latency_world(fake_table=True),
                      message="3 of 3 cached times are below what the hardware allows",
                      must_leave={"out.srp"}),
                 id="compress-latency-fake-cached-table"),
]


# ------------------------------------------------------------------ trust and the front door
# (issue 23: no code from files; import paths, option kinds, scales, weights, ONNX, ncnn)


def import_artifact(target: str, options: dict | None = None, scale: int = 4) -> Maker:
    """The valid artifact, relabelled as a model built from the import path ``target``."""

    def mutate(data: dict) -> None:
        data.update(arch="import", name=target,
                    config={"path": target, "options": options or {}, "scale": scale})

    return artifact(mutate)


class UserNetX2(torch.nn.Module):
    """A user's x2 net (RGB in [0, 1]) with one option, ``width: int``."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 12, 3, padding=1)
        self.up = torch.nn.PixelShuffle(2)
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.conv(x))


class Exploding(torch.nn.Module):
    def __init__(self) -> None:
        raise RuntimeError("cuda driver not found")


def not_a_model() -> str:
    return "hello"


def user_module(**attributes: Any) -> Callable[[pytest.MonkeyPatch], None]:
    """``srprune_catalogue_user`` importable, holding ``attributes``."""

    def patch(monkeypatch: pytest.MonkeyPatch) -> None:
        module = type(sys)("srprune_catalogue_user")
        for key, value in attributes.items():
            setattr(module, key, value)
        monkeypatch.setitem(sys.modules, module.__name__, module)

    return patch


def failing_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """The case's ``site`` folder (holding ``srprune_catalogue_broken``, which raises when
    imported) on sys.path."""
    monkeypatch.syspath_prepend(str(Path.cwd() / "site"))
    monkeypatch.delitem(sys.modules, "srprune_catalogue_broken", raising=False)


def tensor_weights(change: Callable[[dict], None]) -> Maker:
    """The shipped drn-t x4 primal weights, as a plain state dict, ``change`` applied."""

    def make(p: Path, a: Assets) -> None:
        data = copy.deepcopy(a.weights["net"])
        change(data)
        torch.save(data, p)

    return make


def first_weight(value: float) -> Callable[[dict], None]:
    def change(data: dict) -> None:
        key = next(k for k in data if k.endswith(".weight"))
        data[key] = data[key].clone()
        data[key].view(-1)[0] = value

    return change


def int32_safetensors() -> Maker:
    def make(p: Path, a: Assets) -> None:
        from safetensors.torch import save_file

        save_file({k: v.to(torch.int32).contiguous() for k, v in a.weights["net"].items()},
                  str(p))

    return make


def onnx_file() -> Maker:
    def make(p: Path, a: Assets) -> None:
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 12, 3, padding=1), torch.nn.PixelShuffle(2))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net.eval(), (torch.zeros(1, 3, 8, 8),), str(p), dynamo=False)
        # a conv straight to PixelShuffle: no architecture srprune knows

    return make


def ncnn_pair(bin_bytes: Callable[[bytes], bytes] | None = None, param_edit: str = "",
              with_bin: bool = True) -> Maker:
    """A one-conv ncnn pair (x2 PixelShuffle) as srprune writes it, ``x.param`` here and
    ``x.bin`` beside it; the .bin changed by ``bin_bytes``, the param by a text edit."""

    def make(p: Path, a: Assets) -> None:
        from srprune.io.ncnn import read_ncnn, write_ncnn

        tmp = p.parent / "ncnn-src"
        tmp.mkdir()
        src = tmp / "net.param"
        src.write_text("7767517\n3 3\nInput in0 0 1 in0\n"
                       "Convolution conv0 1 1 in0 c0 0=12 1=3 4=1 5=1 6=324\n"
                       "PixelShuffle up0 1 1 c0 out0 0=2\n")
        torch.manual_seed(0)
        weights = torch.randn(324).numpy().astype("float32").tobytes()
        (tmp / "net.bin").write_bytes(b"\0\0\0\0" + weights + bytes(48))
        model = read_ncnn(src)
        write_ncnn(model, p)
        text = p.read_text()
        if param_edit:
            old, new = param_edit.split("=>")
            p.write_text(text.replace(old, new))
        binary = p.with_suffix(".bin")
        if bin_bytes is not None:
            binary.write_bytes(bin_bytes(binary.read_bytes()))
        if not with_bin:
            binary.unlink()
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()

    return make


EVIL = {"evil.srp": import_artifact("subprocess:getoutput", {"cmd": "touch pwned"})}
USER = "srprune_catalogue_user"

CASES += [
    # -------------------------------------------- an artifact naming code: refused, not run
    pytest.param(Case(["info", "evil.srp"], EVIL, message="pass --trust-import"),
                 id="trust-info-crafted-import-path"),
    pytest.param(Case(["eval", "evil.srp"], EVIL, message="pass --trust-import"),
                 id="trust-eval-crafted-import-path"),
    pytest.param(Case(["bench", "evil.srp", *BENCH], EVIL, message="pass --trust-import"),
                 id="trust-bench-crafted-import-path"),
    pytest.param(Case(["compress", "evil.srp", "--ratio", "0.3", *OUT], EVIL,
                      message="pass --trust-import"), id="trust-compress-crafted-import-path"),
    pytest.param(Case(["export", "evil.srp", "--onnx", "m.onnx"], EVIL,
                      message="pass --trust-import"), id="trust-export-crafted-import-path"),
    pytest.param(Case(["train", "drn-t", "--data", "d", "--teacher", "evil.srp", *TRAIN,
                       "--out", "o.pt"], {**EVIL, "d": rgb_folder()},
                      message="pass --trust-import"), id="trust-train-teacher-crafted"),
    pytest.param(Case(["compare", "evil.srp", "--criteria", "l1", "--ratios", "0.3",
                       "--out", "grid", "--no-bench"], EVIL, message="pass --trust-import"),
                 id="trust-compare-crafted-import-path"),
    pytest.param(Case(["info", "evil.srp", "--trust-import"], EVIL,
                      message="neither an nn.Module subclass"),
                 id="trust-import-still-refuses-a-function"),
    pytest.param(Case(["info", "gone.srp", "--trust-import"],
                      {"gone.srp": import_artifact("no_such_module_xyz:Net")},
                      message="module no_such_module_xyz is not importable"),
                 id="trust-artifact-module-not-importable"),
    pytest.param(Case(["info", "odd.srp"], {"odd.srp": import_artifact("not a path")},
                      message="is not package.module:Name"),
                 id="trust-artifact-import-path-garbled"),
    # -------------------------------------------- import paths typed by the user
    pytest.param(Case(["info", "no_such_module_xyz:Net"], message="PYTHONPATH"),
                 id="import-path-module-not-importable"),
    pytest.param(Case(["info", "srprune_catalogue_broken:Net"],
                      {"site": folder(**{"srprune_catalogue_broken.py": text(
                          "raise ImportError('needs cv2')\n")})}, patch=failing_module,
                      message="importing srprune_catalogue_broken for"),
                 id="import-path-module-fails-on-import"),
    pytest.param(Case(["info", f"{USER}:Exploding"], patch=user_module(Exploding=Exploding),
                      message="raised RuntimeError when called"),
                 id="import-path-constructor-raises"),
    pytest.param(Case(["info", f"{USER}:not_a_model"], patch=user_module(
                      not_a_model=not_a_model), message="returned a str"),
                 id="import-path-factory-returns-no-model"),
    pytest.param(Case(["info", f"{USER}:UserNetX2", "--arch-opt", "width=abc"],
                      patch=user_module(UserNetX2=UserNetX2), message="expects an integer"),
                 id="import-path-option-of-the-wrong-kind"),
    pytest.param(Case(["info", f"{USER}:UserNetX2", "--scale", "3"],
                      patch=user_module(UserNetX2=UserNetX2), message="builds a x2 model"),
                 id="import-path-wrong-scale-info"),
    pytest.param(Case(["export", f"{USER}:UserNetX2", "--scale", "4", "--onnx", "m.onnx"],
                      patch=user_module(UserNetX2=UserNetX2), message="builds a x2 model"),
                 id="import-path-wrong-scale-export"),
    pytest.param(Case(["info", "drn-t", "--arch-opt", "scale=8"], message="use --scale"),
                 id="arch-opt-scale"),
    pytest.param(Case(["info", "drn-t", "--arch-opt", "n_feats=abc"],
                      message="option n_feats (--arch-opt) expects an integer, got 'abc'"),
                 id="arch-opt-not-a-number"),
    pytest.param(Case(["info", "edsr-baseline", "--arch-opt", "res_scale=true"],
                      message="expects a number"), id="arch-opt-bool-for-a-number"),
    # -------------------------------------------- weights that would load silently
    pytest.param(Case(["info", "nan.pth"], {"nan.pth": tensor_weights(first_weight(
                      float("nan")))}, message="holds NaN values"), id="checkpoint-nan-weights"),
    pytest.param(Case(["eval", "drn-t", "--weights", "inf.pth"], {"inf.pth": tensor_weights(
                      first_weight(float("inf")))}, message="holds infinite values"),
                 id="weights-infinite-values"),
    pytest.param(Case(["info", "w.safetensors"], {"w.safetensors": int32_safetensors()},
                      message="weights must be floating point"),
                 id="safetensors-int32-weights"),
    pytest.param(Case(["info", "drn-t", "--weights", "w.safetensors"],
                      {"w.safetensors": int32_safetensors()},
                      message="weights must be floating point"), id="weights-int32-safetensors"),
    # -------------------------------------------- ONNX files are named as ONNX
    pytest.param(Case(["info", "m.onnx"], {"m.onnx": onnx_file()},
                      message="no architecture matches this ONNX model"),
                 id="onnx-given-to-info"),
    pytest.param(Case(["compress", "m.onnx", "--ratio", "0.5", *OUT], {"m.onnx": onnx_file()},
                      message="no architecture matches this ONNX model"),
                 id="onnx-given-to-compress"),
    pytest.param(Case(["export", "m.onnx", "--onnx", "o.onnx"], {"m.onnx": onnx_file()},
                      message="no architecture matches this ONNX model"),
                 id="onnx-given-to-export"),
    pytest.param(Case(["info", "model.pt"], {"model.pt": onnx_file()},
                      message="ONNX"), id="onnx-under-another-suffix"),
    # -------------------------------------------- ncnn files
    pytest.param(Case(["info", "x.param"], {"x.param": ncnn_pair(with_bin=False)},
                      message="x.bin"), id="ncnn-param-without-bin"),
    pytest.param(Case(["info", "x.param"], {"x.param": ncnn_pair(lambda b: b[:-20])},
                      message="x.bin"), id="ncnn-truncated-bin"),
    pytest.param(Case(["info", "x.param"], {"x.param": ncnn_pair(lambda b: b + bytes(64))},
                      message="x.bin"), id="ncnn-bin-of-another-model"),
    pytest.param(Case(["info", "x.param"], {"x.param": ncnn_pair(
                      param_edit="Convolution=>Quantize")},
                      message="is a Quantize, whose weights srprune does not read"),
                 id="ncnn-unknown-layer-type"),
    pytest.param(Case(["info", "x.param", "--arch", "nope"], {"x.param": ncnn_pair()},
                      message="nope"), id="ncnn-unknown-arch"),
    pytest.param(Case(["info", "drn-t", "--arch", "span"], message="--arch applies to ncnn"),
                 id="arch-for-a-registered-name"),
    pytest.param(Case(["info", "model.srp", "--arch-opt", "width=3"], ART,
                      message="--arch-opt applies to"), id="arch-opt-for-an-artifact"),
]


# ------------------------------------------------------------------ upscale (issue 27)

UP = ["--out", "o"]

CASES += [
    pytest.param(Case(["upscale", "drn-t", "d", *UP],
                      {"d": folder(**{"a.png": image(), "b.png": raw(b"not an image")})},
                      message="b.png: not a readable image", may_leave={"o", "o/a.png"},
                      must_leave={"o/a.png"}),
                 id="upscale-corrupt-image-among-good-ones"),
    pytest.param(Case(["upscale", "drn-t", "a.png", "--out", "f/sub"],
                      {"a.png": image(), "f": text("a file")},
                      message="cannot write to f/sub: f is a file, not a folder"),
                 id="upscale-output-folder-unwritable"),
    pytest.param(Case(["upscale", "drn-t", "a.png", *UP, "--tile", "4"], {"a.png": image()},
                      message="--tile 4 is smaller than the smallest input drn-t takes"),
                 id="upscale-tile-below-the-model-minimum"),
    pytest.param(Case(["upscale", "drn-t", "a.png", *UP], {"a.png": image(size=(1, 1))},
                      message="the image is 1x1 pixels, smaller than the smallest input"),
                 id="upscale-one-pixel-image"),
    pytest.param(Case(["upscale", "drn-t", "d", *UP], {"d": folder(**{"notes.txt": text("x")})},
                      message="no images"), id="upscale-folder-without-images"),
    pytest.param(Case(["upscale", "drn-t", "d", *UP],
                      {"d": folder(**{"s__a.png": image()})}, message="pass --recursive"),
                 id="upscale-images-only-in-subfolders"),
    pytest.param(Case(["upscale", "drn-t", "a.png", *UP],
                      {"a.png": image(), "o": folder(**{"a.png": image("L")})},
                      message="o/a.png already exist(s); pass --force"),
                 id="upscale-result-exists"),
    pytest.param(Case(["upscale", "drn-t", "gone.png", *UP], message="input not found"),
                 id="upscale-missing-input"),
    pytest.param(Case(["upscale", "drn-t", "a.txt", *UP], {"a.txt": text("x")},
                      message="is not an image file"), id="upscale-input-not-an-image"),
    pytest.param(Case(["upscale", "--compare", "drn-t", "a.png", *UP], {"a.png": image()},
                      message="--compare needs two or more models"),
                 id="upscale-compare-one-model"),
    pytest.param(Case(["upscale", "drn-t", "a.png", *UP, "--tile", "big"], {"a.png": image()},
                      message="expected auto, 0 or a side"), id="upscale-tile-not-a-number"),
    pytest.param(Case(["upscale", "drn-t", "a.png", "b.jpg", *UP],
                      {"a.png": image(), "b.jpg": image(fmt="JPEG")}, code=0,
                      may_leave={"o"}, must_leave={"o/a.png", "o/b.png"}),
                 id="upscale-accepted-png-and-jpeg"),
]


# ------------------------------------------------------------------ the check


# the progress reporter's plain lines on a stderr that is not a terminal ("[stage] start")
PROGRESS_LINE = re.compile(r"^\[[^\]]+\] ")


def _snapshot(root: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``root`` (folders as ``<dir>``)."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        found[rel] = ("<dir>" if path.is_dir()
                      else hashlib.sha256(path.read_bytes()).hexdigest())
    return found


def _show_warnings_on_stderr(message: Any, category: type, filename: str, lineno: int,
                             file: Any = None, line: str | None = None) -> None:
    """What the real command line does with a Python warning (CliRunner's stderr here)."""
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _unhandled(result: Any) -> str:
    if result.exc_info is None or isinstance(result.exception, SystemExit):
        return ""
    lines = traceback.format_exception(*result.exc_info)
    return "".join(lines).strip().splitlines()[-1]


@pytest.mark.parametrize("case", CASES)
def test_bad_input(case: Case, assets: Assets, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    if case.skip:
        pytest.skip(case.skip)
    for name, make in case.files.items():
        make(tmp_path / name, assets)
    before = _snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)
    if case.patch is not None:
        case.patch(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.showwarning = _show_warnings_on_stderr
        result = CliRunner().invoke(main, case.args)
    monkeypatch.undo()  # torch.save and friends back before reading files
    after = _snapshot(tmp_path)

    unhandled = _unhandled(result)
    assert not unhandled, f"unhandled exception (exit {result.exit_code}): {unhandled}"
    assert "Traceback" not in result.output
    lines = [ln for ln in result.stderr.splitlines()
             if ln.strip() and not PROGRESS_LINE.match(ln)]
    if case.code == 0:
        assert result.exit_code == 0, result.stderr
        assert all(ln.startswith(("warning:", "note:")) for ln in lines), lines
        assert not case.message or any(case.message in ln for ln in lines), lines
        new = set(after) - set(before)
        assert new <= {"out.srp"} | case.may_leave | case.must_leave, sorted(new)
    else:
        assert result.exit_code == case.code, (result.exit_code, lines)
        assert len(lines) == 1, lines
        assert lines[0].startswith("error:"), lines
        assert case.message in lines[0], lines
        assert sorted(set(after) - set(before) - case.may_leave) == [], "new files left behind"
    assert re.search(case.pattern, lines[0] if lines else ""), lines
    assert case.must_leave <= set(after), sorted(set(after))
    changed = sorted(k for k, v in before.items() if after.get(k) != v)
    assert changed == [], "files changed or removed"


COMMANDS = {"list", "info", "compress", "bench", "train", "eval", "export", "compare",
            "upscale"}


def test_the_catalogue_covers_every_command() -> None:
    commands = {p.values[0].args[0] for p in CASES} & COMMANDS
    assert commands == COMMANDS
    assert len(CASES) >= 60
    ids = [p.id for p in CASES]
    assert len(ids) == len(set(ids))


def test_a_case_catches_an_unhandled_exception(assets: Assets, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The check itself: an exception escaping the command is reported, not passed."""
    import srprune.cli.info as info

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(info, "load_model_arg", broken)
    result = CliRunner().invoke(main, ["info", "drn-t"])
    assert _unhandled(result) == "RuntimeError: boom"





class FakeOrtError(Exception):
    """What ONNX Runtime raises (``onnxruntime.capi.onnxruntime_pybind11_state``)."""


FakeOrtError.__module__ = "onnxruntime.capi.onnxruntime_pybind11_state"


@pytest.mark.parametrize(("exc", "attempted", "cuda"), [
    (RuntimeError(CPU_OOM), 3_072_000_000, False),
    (MemoryError(NUMPY_OOM), int(2.86 * 2**30), False),
    (torch.OutOfMemoryError(CUDA_OOM), 2 * 2**30, True),
    (FakeOrtError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : bfc_arena.cc:360 Failed to "
                  "allocate memory for requested buffer of size 588382208"), 588_382_208, False),
    (MemoryError(), None, False),
])
def test_out_of_memory_is_recognised_with_the_size_asked(exc: BaseException,
                                                         attempted: int | None,
                                                         cuda: bool) -> None:
    from srprune.cli.common import OutOfMemory

    assert OutOfMemory.of(exc) == OutOfMemory(attempted, cuda)


@pytest.mark.parametrize("exc", [RuntimeError("boom"), ValueError("out of memory"),
                                 FakeOrtError("Invalid input name"), KeyError("memory")])
def test_other_errors_are_not_taken_for_out_of_memory(exc: BaseException) -> None:
    from srprune.cli.common import OutOfMemory

    assert OutOfMemory.of(exc) is None


def test_the_size_that_fits_follows_the_memory_available(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """8 GB available, 4 GB asked at 4000x4000 (and nothing held before): twice the asked
    memory would be needed, so 70 % of 8/8 of the pixels; a model whose widest feature map
    takes 2 kB per LR pixel, three alive at once, narrows that further."""
    from srprune.cli import common
    from srprune.models import build_model

    monkeypatch.setattr(common, "available_memory", lambda: 8_000_000_000)
    oom = common.OutOfMemory(4_000_000_000, False)
    line = oom.line(("--input-size", (4000, 4000)), None)
    assert "--input-size 3344 3344 or smaller should fit" in line  # sqrt(0.7) * 4000
    model = build_model("drn-t", 4, pretrained=False)
    assert common._activation_bytes(model) == 2048  # 32 channels at x4: 32 * 16 * 4 bytes
    line = oom.line(("--input-size", (4000, 4000)), None, [model])
    side = int((0.7 * 8e9 / (3 * 2048)) ** 0.5) // 8 * 8
    assert f"--input-size {side} {side} or smaller should fit" in line
    assert "the model's widest feature map" in line
