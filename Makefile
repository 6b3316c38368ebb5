# make setup: .venv with torch==2.13.0 (the CPU build that lies on disk) installed first,
# then rnnkit in editable mode with its test extras.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_PIN := torch==2.13.0

.PHONY: setup test demo bench docs clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

test: setup
	$(PY) -m pytest tests

demo: setup
	$(PY) -m rnnkit.demo

bench: setup
	$(PY) -m benchmarks.speed

# make docs: the tutorial. Installs the docs extra (MkDocs) into .venv, reruns every
# command of docs/make_figures.py (small budgets, one thread, a few minutes), then builds
# site/ with --strict so a missing figure or a broken link fails.
docs: setup $(VENV)/.docs-installed
	$(PY) docs/make_figures.py
	$(VENV)/bin/mkdocs build --strict

$(VENV)/.docs-installed: pyproject.toml
	$(PY) -m pip install --quiet -e '.[docs]'
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info site
