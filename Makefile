# Two commands on a fresh clone:  `make repro`  and  `make test`.
# Both create the project's environment first (.venv, Python 3.11, every version pinned
# in uv.lock). uv itself is installed with pip into .tools/ (pinned below); nothing is
# installed outside this folder.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION := 0.13.9
UV := .tools/bin/uv
VENV := .venv
STAMP := $(VENV)/.synced

# Same numbers on every machine: one BLAS/OpenMP thread, fixed hash seed; the
# environment's own tools first on PATH (dvc.yaml calls `python -m pipeline`).
export OMP_NUM_THREADS := 1
export OPENBLAS_NUM_THREADS := 1
export MKL_NUM_THREADS := 1
export PYTHONHASHSEED := 0
export UV_PYTHON_DOWNLOADS := never
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup notebooks browser repro verify test test-fast lint lab bench clean-env help

help:
	@echo "make repro  - set up .venv and run the DVC pipeline (renders reports/)"
	@echo "make verify - rerun everything in a scratch copy; does every output reproduce?"
	@echo "make test   - set up .venv and run pytest + nbval"
	@echo "make test-fast - the quick tests only (no end-to-end runs)"
	@echo "make lab    - open the notebooks in JupyterLab"
	@echo "make lint   - ruff"
	@echo "make bench  - benchmarks (fit time vs lme4, 2M-row inputs, coverage, ruptures, power, bootstrap, whole-pipeline times)"

$(UV):
	@echo "installing uv $(UV_VERSION) into .tools/"
	@$(PYTHON) -m pip install --disable-pip-version-check --no-warn-script-location \
	  --root-user-action=ignore --quiet --target .tools "uv==$(UV_VERSION)"

# --compile-bytecode: the packages' .pyc files are written once here. Where
# PYTHONDONTWRITEBYTECODE is set (as on this project's machines) Python would otherwise
# compile pandas, scipy, dask ... from source in every process: 2.5 s instead of 0.8 s for
# `import pandas`, paid by every DVC stage, notebook kernel and Dask worker.
$(STAMP): pyproject.toml uv.lock | $(UV)
	@echo "creating .venv from uv.lock (first run: about two minutes)"
	@$(UV) sync --frozen --quiet --compile-bytecode --python $(PYTHON)
	@touch $(STAMP)

setup: $(STAMP)

# Stages write into build/ and the last stage, promote, swaps results/ and reports/ in
# whole (pipeline/promote.py): a failure or kill -9 anywhere loses nothing. On a fresh clone
# build/ is first filled from the committed results/ so that DVC (which checks every file
# against dvc.lock) need not refit unchanged models. One line per stage and only messages a
# user can act on (pipeline/progress.yaml).
# compileall: the project's own modules are an editable install, which uv's
# --compile-bytecode does not reach; with PYTHONDONTWRITEBYTECODE set every stage (and
# notebook kernel) compiled them from source, 0.15-0.25 s per process. compileall writes
# pipeline/**/__pycache__ (gitignored, dvcignored) and skips files already compiled; an
# edited file's stale .pyc is ignored by Python (source mtime and size are checked).
repro: setup
	@python -m compileall -q pipeline
	@python -m pipeline seed-staging
	@python -m pipeline.progress dvc repro

# The reviewer's command: rerun the committed pipeline in a scratch copy and compare every
# output byte for byte (pipeline/verify.py); never writes to the working copy.
verify: setup
	@python -m pipeline.verify

# One pytest run over the tests and the notebooks (nbval executes every cell of each
# report on the shipped data), spread over the machine's cores by pytest-xdist; a test file
# (or notebook) stays on one worker, so module fixtures are built once. TEST_WORKERS=1 runs
# serially.
TEST_WORKERS ?= auto
test: setup notebooks browser
	ruff check pipeline tests benchmarks notebooks
	pytest -n $(TEST_WORKERS) --dist loadfile --nbval-lax --nbval-current-env tests notebooks/build

# The browser test opens the reports in Debian's Chromium; installed here when missing
# and we are root with apt-get (as on CI); otherwise that one test is skipped.
browser:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser test"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	      >/dev/null || echo "could not install chromium: the browser test will be skipped"; \
	  else echo "chromium not found and not root: the browser test will be skipped"; fi; \
	fi

# Notebooks are kept as jupytext sources; nbval runs the .ipynb made from them.
notebooks:
	@rm -rf notebooks/build && mkdir -p notebooks/build
	@for f in notebooks/*.py; do \
	  jupytext --quiet --to ipynb -o notebooks/build/$$(basename $${f%.py}).ipynb $$f; done

test-fast: setup
	pytest -n $(TEST_WORKERS) --dist loadfile -m "not slow"

lint: setup
	ruff check pipeline tests benchmarks notebooks

# Jupyter refuses to run as root unless told; containers and CI machines often are root.
lab: setup
	jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/

bench: setup
	python benchmarks/bench_fit.py
	python benchmarks/bench_inputs.py
	python benchmarks/coverage.py
	python benchmarks/ruptures_coverage.py
	python benchmarks/bench_ruptures.py
	python benchmarks/bench_power.py
	python benchmarks/bench_replicates.py
	python benchmarks/coverage_bootstrap.py
	python benchmarks/bench_render.py
	python benchmarks/bench_repro.py

clean-env:
	rm -rf $(VENV) .tools
