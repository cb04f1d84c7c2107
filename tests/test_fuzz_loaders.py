"""Fuzz the file loaders: whatever a file holds, it loads or it is one ``SrpruneError``.

Random bytes, damaged copies of valid files (bytes flipped, cut short), random nested
structures saved with ``torch.save`` (dicts, lists, strings, numbers, None, tensors of
random shapes and dtypes) and valid files with a few entries replaced or deleted are fed to
every loader that reads a user's file: ``read_checkpoint``, ``load_artifact``,
``load_weights``, ``read_plan`` (JSON and the authors' text format) and the channel-config
reader. Any other exception is a bug. An ``SrpruneError`` must name the file on one line; an
artifact that loads must also run.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from srprune.errors import SrpruneError
from srprune.io.artifact import FORMAT
from srprune.io.checkpoint import read_checkpoint
from srprune.models import SRModel, build_model, load_weights
from srprune.models.artifacts import load_artifact, save_artifact
from srprune.models.channel_config import read_widths
from srprune.prune.graph import SRGraph
from srprune.prune.plan import read_plan

FUZZ = settings(max_examples=80, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FEW = settings(FUZZ, max_examples=60)
DRN_T = {"scale": 4, "n_feats": 8, "n_blocks": 5}  # drn-t x4: 14 channel-config lines


# ------------------------------------------------------------------ shared valid files


class Valid:
    """A tiny drn-t x4 (pruned), its artifact and weights, its prunable units: built once."""

    def __init__(self, folder: Path) -> None:
        from srprune.api import compress_model

        self.folder = folder
        self.template = build_model("drn-t", 4, pretrained=False)
        self.units = SRGraph(self.template.net, 4).units("internal")
        pruned = build_model("drn-t", 4, pretrained=False)
        compress_model(pruned, 0.3)
        save_artifact(pruned, folder / "valid.srp")
        self.artifact_bytes = (folder / "valid.srp").read_bytes()
        self.artifact = torch.load(folder / "valid.srp", weights_only=True)
        self.weights = {"net": self.template.net.state_dict(),
                        "duals": [d.state_dict() for d in self.template.duals], "meta": {}}
        self.count = 0

    def file(self, suffix: str) -> Path:
        """A fresh file name for one example (examples never see each other's files)."""
        self.count += 1
        return self.folder / f"case{self.count}{suffix}"

    def model(self) -> SRModel:
        return copy.deepcopy(self.template)


@pytest.fixture(scope="module")
def valid(tmp_path_factory: pytest.TempPathFactory) -> Valid:
    return Valid(tmp_path_factory.mktemp("fuzz"))


def loads_or_refuses(load: Callable[..., Any], path: Path, *args: Any) -> Any:
    """``load(path, *args)``; an ``SrpruneError`` must be one line naming the file (None)."""
    try:
        return load(path, *args)
    except SrpruneError as exc:
        message = str(exc)
        assert message.strip() and "\n" not in message, repr(message)
        assert path.name in message, message
        return None


# ------------------------------------------------------------------ strategies

dtypes = st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int64,
                          torch.uint8, torch.bool, torch.complex64])
shapes = st.lists(st.integers(0, 4), min_size=0, max_size=4)


@st.composite
def tensors(draw: st.DrawFn) -> torch.Tensor:
    shape, dtype = draw(shapes), draw(dtypes)
    values = torch.randn(shape, generator=torch.Generator().manual_seed(draw(st.integers(0, 9))))
    return values.to(dtype)


NAMES = ["format", "version", "arch", "name", "scale", "config", "state_dict", "duals",
         "plan", "meta", "net", "units", "head.weight", "head.bias", "n_feats", "n_blocks"]
keys = st.sampled_from(NAMES) | st.text(max_size=6)
scalars = (st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats()
           | st.text(max_size=12) | st.just(FORMAT))
structures = st.recursive(
    scalars | tensors(),
    lambda inner: (st.lists(inner, max_size=4) | st.tuples(inner, inner)
                   | st.dictionaries(keys | st.integers(-3, 3), inner, max_size=5)),
    max_leaves=16,
)
with_header = st.builds(lambda body, version: {**body, "format": FORMAT, "version": version},
                        st.dictionaries(keys, structures, max_size=6),
                        st.sampled_from([1, 0, 2, -1, True, "1", None]))


def paths_of(data: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path into nested dicts and lists (``("state_dict", "head.weight")``)."""
    found = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            found += paths_of(value, (*prefix, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found += paths_of(value, (*prefix, i))
    return found


def like(value: Any) -> st.SearchStrategy:
    """Values that could pass for ``value`` at a glance (a tensor's cousin, a nearby int)."""
    if isinstance(value, torch.Tensor):
        return st.builds(lambda s, z: (torch.zeros if z else torch.ones)(s, dtype=value.dtype),
                         st.lists(st.integers(0, 40), min_size=max(0, value.dim() - 1),
                                  max_size=value.dim() + 1).map(tuple), st.booleans())
    if isinstance(value, int) and not isinstance(value, bool):
        return st.integers(-10, 10**6)
    return structures


@st.composite
def mutated(draw: st.DrawFn, original: dict) -> dict:
    """``original`` (deep-copied) with one to three entries replaced or deleted."""
    data = copy.deepcopy(original)
    all_paths = paths_of(data)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(all_paths))
        parent = data
        try:
            for key in path[:-1]:
                parent = parent[key]
            current = parent[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed it
        if draw(st.integers(0, 4)) == 0 and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(like(current) | structures)
    return data


@st.composite
def damaged_bytes(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` cut short, or with a few bytes overwritten."""
    data = bytearray(original)
    if draw(st.booleans()):
        return bytes(data[:draw(st.integers(0, len(data) - 1))])
    rng = random.Random(draw(st.integers(0, 2**32)))
    for _ in range(draw(st.integers(1, 8))):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


# ------------------------------------------------------------------ read_checkpoint


@FUZZ
@given(data=st.binary(max_size=2048)
       | st.binary(max_size=512).map(lambda b: b"\x80\x02" + b)  # a pickle (legacy format)
       | st.binary(max_size=512).map(lambda b: b"PK\x03\x04" + b))  # a zip (torch format)
def test_read_checkpoint_random_bytes(valid: Valid, data: bytes) -> None:
    path = valid.file(".pt")
    path.write_bytes(data)
    loads_or_refuses(read_checkpoint, path)


@FUZZ
@given(obj=structures)
def test_read_checkpoint_random_structures(valid: Valid, obj: Any) -> None:
    path = valid.file(".pt")
    torch.save(obj, path)
    loaded = loads_or_refuses(read_checkpoint, path)
    assert loaded is not None or obj is None


# ------------------------------------------------------------------ load_artifact


def check_artifact(path: Path) -> None:
    model = loads_or_refuses(load_artifact, path)
    if model is not None:  # what loads must run and upscale
        with torch.no_grad():
            out = model(torch.rand(1, 3, 8, 8) * 255)
        assert tuple(out.shape) == (1, 3, 8 * model.scale, 8 * model.scale)


@FEW
@given(data=st.data())
def test_load_artifact_damaged_bytes(valid: Valid, data: st.DataObject) -> None:
    path = valid.file(".srp")
    path.write_bytes(data.draw(damaged_bytes(valid.artifact_bytes)))
    check_artifact(path)


@FUZZ
@given(obj=structures | with_header)
def test_load_artifact_random_structures(valid: Valid, obj: Any) -> None:
    path = valid.file(".srp")
    torch.save(obj, path)
    check_artifact(path)


@settings(FUZZ, max_examples=100)
@given(data=st.data())
def test_load_artifact_tampered(valid: Valid, data: st.DataObject) -> None:
    path = valid.file(".srp")
    torch.save(data.draw(mutated(valid.artifact)), path)
    check_artifact(path)


# ------------------------------------------------------------------ load_weights


@FUZZ
@given(obj=structures | st.dictionaries(st.sampled_from(["net", "duals", "meta"]), structures))
def test_load_weights_random_structures(valid: Valid, obj: Any) -> None:
    path = valid.file(".pt")
    torch.save(obj, path)
    loads_or_refuses(lambda p, m: load_weights(m, p), path, valid.model())


@FUZZ
@given(data=st.data())
def test_load_weights_tampered(valid: Valid, data: st.DataObject) -> None:
    path = valid.file(".pt")
    torch.save(data.draw(mutated(valid.weights)), path)
    model = valid.model()
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    if loads_or_refuses(lambda p, m: load_weights(m, p), path, model) is None:
        after = model.net.state_dict()  # refused: nothing was loaded
        assert all(torch.equal(before[k], after[k]) for k in before)


# ------------------------------------------------------------------ read_plan

json_values = st.recursive(st.none() | st.booleans() | st.integers(-5, 50) | st.floats()
                           | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                           max_leaves=10)


@st.composite
def json_plans(draw: st.DrawFn, names: list[str]) -> str:
    units = draw(st.dictionaries(st.sampled_from(names) | st.text(max_size=8),
                                 st.integers(-2, 40) | json_values, max_size=len(names)))
    body = draw(st.sampled_from(["units", "object", "other"]))
    data: Any = ({"format": "srprune-plan", "units": units} if body == "units"
                 else {"units": draw(json_values)} if body == "object"
                 else draw(st.dictionaries(st.text(max_size=6), json_values, max_size=3)))
    text = json.dumps(data)
    return text[:draw(st.integers(1, len(text)))] if draw(st.integers(0, 5)) == 0 else text


def width_lines(n_lines: int) -> st.SearchStrategy:
    line = (st.integers(-3, 40).map(str) | st.text(max_size=4) | st.just("")
            | st.sampled_from([" 8 ", "+4", "1_0", "0x10", "1e3", "4.0", "\u0664", "8\t"]))
    return st.lists(line, min_size=max(0, n_lines - 2), max_size=n_lines + 2).map("\n".join)


@FUZZ
@given(data=st.data())
def test_read_plan_json(valid: Valid, data: st.DataObject) -> None:
    path = valid.file(".json")
    path.write_text(data.draw(json_plans([u.name for u in valid.units])))
    plan = loads_or_refuses(read_plan, path, valid.units)
    if plan is not None:
        widths = {u.name: u.width for u in valid.units}
        assert all(type(v) is int and 1 <= v <= widths[k] for k, v in plan.items())


@FUZZ
@given(data=st.data())
def test_read_plan_text(valid: Valid, data: st.DataObject) -> None:
    path = valid.file(".txt")
    text = data.draw(width_lines(len(valid.units)) | st.text(max_size=200))
    path.write_text(text)
    plan = loads_or_refuses(read_plan, path, valid.units)
    if plan is not None:
        assert len(plan) == len(valid.units)


@FUZZ
@given(data=st.binary(max_size=512))
def test_read_plan_random_bytes(valid: Valid, data: bytes) -> None:
    path = valid.file(".txt")
    path.write_bytes(data)
    loads_or_refuses(read_plan, path, valid.units)


# ------------------------------------------------------------------ channel configs


@FUZZ
@given(data=st.data())
def test_read_channel_config(valid: Valid, data: st.DataObject) -> None:
    path = valid.file(".txt")
    content = data.draw(width_lines(14).map(str.encode) | st.binary(max_size=256))
    path.write_bytes(content)
    widths = loads_or_refuses(read_widths, path, *DRN_T.values())
    if widths is not None:
        assert len(widths.as_lines()) == 14
        build_model("drn-t", 4, pretrained=False, widths=widths.as_lines())

