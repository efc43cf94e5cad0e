# quantnb: two entry points for a fresh clone.
#   make demo   set up .venv and run the whole pipeline of configs/demo.yaml on the bundled samples
#   make test   set up .venv and run the test suite
#   make lab    JupyterLab on the project's kernel: 127.0.0.1 only, random token (the URL is printed)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test venv lint bench clean-runs lab

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, from the local CPU wheel, so nothing later pulls the CUDA build.
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

demo: venv
	$(BIN)/quantnb pipeline -f configs/demo.yaml

test: venv
	bash scripts/system-deps.sh  # Debian's chromium and postgresql, when missing
	$(BIN)/ruff check lib tests benchmarks
	$(BIN)/mypy  # the library's types ([tool.mypy] in pyproject.toml)
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=25  # the slowest tests, for keeping the suite near 15 min

lab: venv
	$(BIN)/python -m quantnb.lab

lint: venv
	$(BIN)/ruff check lib tests benchmarks
	$(BIN)/mypy

bench: venv
	$(BIN)/python benchmarks/bench_etl.py

clean-runs:
	rm -rf runs/* logs/* debug_plots/* data/processed data/labelled
	touch runs/.gitkeep logs/.gitkeep debug_plots/.gitkeep
