# Two commands do everything on a machine with python3, pip and make:
#   make demo   import the demo universe into data/kdist.duckdb on a local Dask cluster
#   make test   run the whole test suite, notebooks included
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DB ?= data/kdist.duckdb

.PHONY: demo test test-fast test-interop interop lab bench clean venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall when the project's dependencies change.
$(VENV)/.installed-demo: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml tests/plugin_pkg/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -m pip install --quiet -e tests/plugin_pkg
	touch $@ $(VENV)/.installed-demo

# What make lab needs: the notebooks' packages (JupyterLab, ipywidgets, matplotlib,
# dask-labextension), no test or vendor packages.
$(VENV)/.installed-lab: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[notebook]"
	touch $@ $(VENV)/.installed-demo

# What make test needs: the test packages, the notebooks' (their tests check dask-labextension
# too), and JupyterLab and Playwright for the browser test (Chromium comes from apt).
$(VENV)/.installed-browser: pyproject.toml tests/plugin_pkg/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,notebook,browser]"
	$(BIN)/python -m pip install --quiet -e tests/plugin_pkg
	touch $@ $(VENV)/.installed-lab $(VENV)/.installed-test $(VENV)/.installed-demo

venv: $(VENV)/.installed-test

demo: $(VENV)/.installed-demo
	$(BIN)/kdist ingest --all --start 2020-01-01 --end 2024-12-31 --scheduler local --db $(DB)
	$(BIN)/kdist check --db $(DB)

# The libraries kdist's exports are checked with, each in a virtual environment of its own
# (.venv-NAME, from tests/interop/NAME.txt) where its pins conflict with kdist's (pandas):
# kdist itself is installed there without its dependencies; the file lists what is needed,
# and NAME.nodeps what is installed without its own (pyqlib: its full install pulls mlflow,
# cvxpy and lightgbm, 1.4 GB, for what reading data does not need).
INTEROP := $(patsubst tests/interop/%.txt,%,$(wildcard tests/interop/*.txt))

$(VENV)-%/.installed: tests/interop/%.txt $(wildcard tests/interop/*.nodeps) pyproject.toml
	$(PYTHON) -m venv $(VENV)-$*
	$(VENV)-$*/bin/python -m pip install --quiet --upgrade pip
	$(VENV)-$*/bin/python -m pip install --quiet -r $<
	if [ -f tests/interop/$*.nodeps ]; then \
		$(VENV)-$*/bin/python -m pip install --quiet --no-deps -r tests/interop/$*.nodeps; fi
	$(VENV)-$*/bin/python -m pip install --quiet --no-deps -e .
	touch $@

interop: $(foreach name,$(INTEROP),$(VENV)-$(name)/.installed)

test: $(VENV)/.installed-browser interop
	$(BIN)/python -m pytest

# The consumer checks alone: each export read back by the library it is for.
test-interop: $(VENV)/.installed-test interop
	$(BIN)/python -m pytest -m interop tests

# Unit tests only (no cluster processes, no notebooks), for a quick loop while editing.
test-fast: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m "not slow and not network and not browser and not interop" tests

# JupyterLab on notebooks/, with only what the notebooks need installed.
lab: $(VENV)/.installed-lab
	$(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/

# The benchmark scenarios of benchmarks/README.md (about 30 minutes); writes benchmarks/results.json.
bench: $(VENV)/.installed-test
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) $(VENV)-* data .pytest_cache
