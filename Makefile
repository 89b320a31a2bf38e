PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test bench clean

$(BIN)/recon: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(BIN)/recon
	$(BIN)/recon demo --out out/demo

test: $(BIN)/recon
	$(BIN)/python -m pytest -q tests

bench: $(BIN)/recon
	command -v bart >/dev/null || (apt-get update && apt-get install -y bart) || echo "bart not installed: BART benchmarks will be skipped"
	$(BIN)/python -m pytest -q benchmarks --benchmark-only --benchmark-columns=median,iqr,rounds --benchmark-sort=name

clean:
	rm -rf out .pytest_cache .benchmarks
