"""No code from files: an artifact never makes srprune import or call what the user did not name.

A crafted artifact records an import path to a payload: a module whose import writes a marker
file, a function that writes one when called, or ``subprocess:getoutput`` with a ``touch``
command. Every entry point that loads artifacts (``info``, ``eval``, ``bench``, ``compress``,
``export``, ``train`` and ``train --teacher``, ``compare`` and its cell workers and latency
stage, ``srprune.load``, ``srprune.compress``) must refuse it with one line naming
``--trust-import``, and the marker must never appear. A Hypothesis fuzz over every artifact
field checks the same for the loader itself.
"""

from __future__ import annotations

import copy
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import srprune
from srprune.cli import main
from srprune.errors import SrpruneError
from srprune.models.artifacts import load_artifact, save_artifact
from srprune.models.detect import load_import_path

PAYLOAD = "srprune_marker_payload"
MARKER = "marker-was-written"


class TinyNet(nn.Module):
    """A user's own x2 net: conv, ReLU, conv, PixelShuffle (RGB in [0, 1])."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, width, 3, padding=1)
        self.tail = nn.Conv2d(width, 12, 3, padding=1)
        self.up = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.tail(torch.relu(self.head(x))))


@pytest.fixture
def payload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A payload module on sys.path (importing it writes the marker) and the user's own net
    as ``srprune_test_usernet:TinyNet``; returns the marker's path (absent at the start)."""
    marker = tmp_path / MARKER
    code = textwrap.dedent(f"""
        from pathlib import Path
        from torch import nn
        Path({str(marker)!r}).write_text("imported")

        def touch(**options):
            Path({str(marker)!r}).write_text("called")

        class Net(nn.Module):
            def __init__(self, **options):
                Path({str(marker)!r}).write_text("constructed")
                super().__init__()
    """)
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / f"{PAYLOAD}.py").write_text(code)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, PAYLOAD, raising=False)
    user = type(sys)("srprune_test_usernet")
    user.TinyNet = TinyNet
    monkeypatch.setitem(sys.modules, "srprune_test_usernet", user)
    monkeypatch.chdir(tmp_path)
    return marker


USER_PATH = "srprune_test_usernet:TinyNet"
PAYLOADS = {
    "module-import": (f"{PAYLOAD}:Net", {}),
    "function-call": (f"{PAYLOAD}:touch", {"x": 1}),
    "stdlib-shell": ("subprocess:getoutput", {"cmd": f"touch {MARKER}"}),
    "os-system": ("os:system", {"command": f"touch {MARKER}"}),
}


def user_artifact(path: Path) -> Path:
    model = load_import_path(USER_PATH, None, {"width": 8})
    return save_artifact(model, path)


def crafted(path: Path, target: str, options: dict[str, Any]) -> Path:
    """The user's artifact with its import path swapped for ``target``."""
    data = torch.load(user_artifact(path.with_name("clean.srp")), weights_only=True)
    data["config"] = {"path": target, "options": options, "scale": 2}
    data["name"] = target
    torch.save(data, path)
    return path


def invoke(*args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        result.exception
    assert "Traceback" not in result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip() and not ln.startswith("[")]
    return result.exit_code, lines


def assert_untouched(marker: Path) -> None:
    assert not marker.exists(), marker.read_text()
    assert not Path(MARKER).exists()
    assert PAYLOAD not in sys.modules


ENTRY_POINTS = {
    "info": lambda m: ["info", m, "--input-size", "8", "8"],
    "eval": lambda m: ["eval", m, "--data", "photos"],
    "bench": lambda m: ["bench", m, "--runs", "1", "--warmup", "0", "--input-size", "8", "8"],
    "compress": lambda m: ["compress", m, "--ratio", "0.3", "--out", "out.srp"],
    "export": lambda m: ["export", m, "--onnx", "out.onnx", "--input-size", "8", "8"],
    "train": lambda m: ["train", m, "--data", "photos", "--steps", "1", "--batch", "1",
                        "--patch", "8", "--out", "out.srp"],
    "train-teacher": lambda m: ["train", "drn-t", "--data", "photos", "--steps", "1",
                                "--batch", "1", "--patch", "8", "--teacher", m,
                                "--out", "out.pt"],
    "compare": lambda m: ["compare", m, "--criteria", "l1", "--ratios", "0.3",
                          "--out", "grid", "--no-bench"],
}


@pytest.mark.parametrize("kind", sorted(PAYLOADS))
@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_a_crafted_artifact_runs_no_code_through_any_command(payload, photo_dir, entry, kind):
    target, options = PAYLOADS[kind]
    evil = crafted(Path("evil.srp"), target, options)
    assert photo_dir == Path.cwd() / "photos"
    code, lines = invoke(*ENTRY_POINTS[entry](str(evil)))
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error:"), lines
    assert "--trust-import" in lines[0] and target in lines[0], lines
    assert_untouched(payload)
    assert not Path("out.srp").exists() and not Path("out.onnx").exists()


@pytest.mark.parametrize("kind", sorted(PAYLOADS))
def test_the_api_refuses_it_too(payload, kind):
    evil = crafted(Path("evil.srp"), *PAYLOADS[kind])
    with pytest.raises(SrpruneError, match="--trust-import"):
        srprune.load(evil)
    with pytest.raises(SrpruneError, match="--trust-import"):
        srprune.compress(str(evil), 0.3)
    assert_untouched(payload)


@pytest.mark.parametrize("kind", ["function-call", "stdlib-shell", "os-system"])
def test_trust_import_still_calls_only_module_classes_and_marked_factories(payload, kind):
    """``--trust-import`` opens the door to nn.Module classes, not to any callable: the
    target is inspected before it is called (the stdlib payloads are imported, as stdlib
    modules always are; nothing is called)."""
    target, options = PAYLOADS[kind]
    evil = crafted(Path("evil.srp"), target, options)
    if kind == "function-call":
        # the user opted in to importing; the module ran, but its function was not called
        with pytest.raises(SrpruneError, match=r"neither an nn\.Module subclass"):
            srprune.load(evil, trust_import=True)
        assert payload.read_text() == "imported"
        return
    code, lines = invoke("info", str(evil), "--trust-import", "--input-size", "8", "8")
    assert code == 2 and len(lines) == 1, lines
    assert "neither an nn.Module subclass nor a function marked @srprune_factory" in lines[0]
    assert_untouched(payload)


def test_the_users_own_import_path_loads_when_trusted_or_named(payload, photo_dir):
    art = user_artifact(Path("mine.srp"))
    code, lines = invoke("info", str(art), "--input-size", "8", "8")
    assert code == 2 and "--trust-import" in lines[0], lines
    code, lines = invoke("info", str(art), "--trust-import", "--input-size", "8", "8")
    assert code == 0, lines
    # named on the command line: bench puts the import path beside its own artifact
    code, lines = invoke("bench", USER_PATH, str(art), "--runs", "1", "--warmup", "0",
                         "--input-size", "8", "8")
    assert code == 0, lines
    # --arch-opt is the import path's; the artifact carries its own config
    code, lines = invoke("bench", USER_PATH, "--arch-opt", "width=4", str(art), "--runs", "1",
                         "--warmup", "0", "--input-size", "8", "8", "--json")
    assert code == 0, lines
    assert srprune.load(art, trust_import={USER_PATH}).scale == 2
    with pytest.raises(SrpruneError, match="--trust-import"):
        srprune.load(art, trust_import={"other.module:Net"})
    assert_untouched(payload)


def test_a_marked_factory_loads_with_trust_import(tmp_path, monkeypatch):
    module = type(sys)("srprune_test_factories")

    @srprune.srprune_factory
    def build(width: int = 8) -> nn.Module:
        return TinyNet(width)

    def unmarked(width: int = 8) -> nn.Module:
        return TinyNet(width)

    module.build, module.unmarked = build, unmarked
    monkeypatch.setitem(sys.modules, "srprune_test_factories", module)
    for name in ("build", "unmarked"):  # typed by the user: any factory returning a Module
        model = load_import_path(f"srprune_test_factories:{name}", None, {"width": 4})
        assert model.scale == 2 and model.net.head.out_channels == 4
        save_artifact(model, tmp_path / f"{name}.srp")
    assert load_artifact(tmp_path / "build.srp", trust_import=True).scale == 2
    with pytest.raises(SrpruneError, match=r"neither an nn\.Module subclass"):
        load_artifact(tmp_path / "unmarked.srp", trust_import=True)
    assert load_artifact(tmp_path / "unmarked.srp",
                         trust_import={"srprune_test_factories:unmarked"}).scale == 2


def test_compare_workers_and_its_latency_stage_refuse_crafted_grid_files(payload):
    """A shared grid folder is the same door: a cell worker's model file and the artifacts
    the latency stage reads from the cells' rows."""
    from srprune.compare.cell import run_cell
    from srprune.compare.grid import Cell, GridSpec
    from srprune.compare.latency import bench_grid
    from srprune.compare.store import GridFolder

    evil = crafted(Path("evil.srp"), *PAYLOADS["stdlib-shell"])
    spec = GridSpec(model=str(evil), criteria=("l1",), strategies=("uniform",), ratios=(0.3,),
                    seeds=(0,), input_size=(8, 8))
    row = run_cell(spec, Cell("l1", "uniform", 0.3, 0), evil, Path("cell.srp"), 1)
    assert row["status"] == "failed" and "--trust-import" in row["error"]
    folder = GridFolder(Path("grid"))
    folder.root.mkdir()
    folder.model_file.write_bytes(user_artifact(Path("base.srp")).read_bytes())
    rows = [{"key": "evil", "status": "ok", "artifact": str(evil)}]
    result = bench_grid(folder, rows, (8, 8), 1, 1, 0, trusted_imports=(USER_PATH,))
    assert result["error"] and "--trust-import" in result["error"]
    assert_untouched(payload)


def test_compare_runs_a_users_import_path_model_end_to_end(payload, photo_dir):
    """The user's own import path is trusted for the grid's own files (workers included)."""
    code, lines = invoke("compare", USER_PATH, "--criteria", "l1", "--ratios", "0.3",
                         "--out", "grid", "--bench-runs", "1", "--bench-warmup", "0",
                         "--input-size", "8", "8", "--jobs", "1")
    assert code == 0, lines
    assert_untouched(payload)


# ------------------------------------------------------------------ fuzz every field

TEXT = st.text(alphabet=st.characters(codec="ascii"), max_size=30)
TARGETS = st.sampled_from([t for t, _ in PAYLOADS.values()] + [
    f"{PAYLOAD}.sub:Net", f"{PAYLOAD}:Net.__init__", "builtins:eval", "builtins:exec",
    "importlib:import_module", "torch:load", "os.path:join"]) | TEXT
PLAIN = st.recursive(st.none() | st.booleans() | st.integers(-3, 1 << 40) | TEXT
                     | st.floats(allow_nan=True),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(TEXT, inner, max_size=3), max_leaves=8)
FIELDS = {
    "arch": st.sampled_from(["import", "spandrel", "drn", "srnet", "edsr", ""]) | TEXT,
    "name": TARGETS | st.sampled_from(["drn-t", "span", "espcn"]),
    "scale": st.integers(-2, 9) | PLAIN,
    "config": st.fixed_dictionaries({}, optional={
        "path": TARGETS, "options": st.dictionaries(TEXT, PLAIN, max_size=3) | PLAIN,
        "scale": st.integers(1, 4) | PLAIN,
        "package": st.sampled_from([PAYLOAD, "os", "subprocess", "..", "SPAN", "SPAN.os",
                                    "__init__"]) | TEXT,
        "class_name": st.sampled_from(["Net", "system", "getoutput", "SPAN", "__class__",
                                       "importlib"]) | TEXT,
        "hyperparameters": st.dictionaries(TEXT, PLAIN, max_size=3) | PLAIN,
    }) | PLAIN,
    "plan": PLAIN,
    "meta": PLAIN,
    "channel_splits": PLAIN,
    "removed_blocks": st.lists(TEXT, max_size=3) | PLAIN,
    "version": st.integers(0, 4) | PLAIN,
}


@pytest.fixture(scope="module")
def clean_artifact(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("clean") / "user.srp"
    sys.modules["srprune_test_usernet"] = type(sys)("srprune_test_usernet")
    sys.modules["srprune_test_usernet"].TinyNet = TinyNet
    try:
        return torch.load(user_artifact(path), weights_only=True)
    finally:
        del sys.modules["srprune_test_usernet"]


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(changes=st.fixed_dictionaries({}, optional=FIELDS))
def test_fuzz_no_artifact_field_makes_the_loader_run_code(payload, clean_artifact, changes):
    data = copy.deepcopy(clean_artifact)
    data.update(changes)
    path = Path("fuzz.srp")
    torch.save(data, path)
    try:
        load_artifact(path)
    except SrpruneError as exc:
        assert "\n" not in str(exc)
    assert_untouched(payload)
