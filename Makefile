# One command to set up and run the main job, one to set up and run the tests.
#   make demo   searches the released Fashion-MNIST supernet, exports, runs the cascade
#               (after a short training run of its own to watch)
#   make test   lint + the test suite (slow tests apart: make test-slow)
# Both create .venv when it is missing and install Fashion-MNIST from Debian when apt exists.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist
export TF_CPP_MIN_LOG_LEVEL ?= 3
WORKDIR ?= runs/demo

.PHONY: setup data lint test test-slow demo bench clean

$(STAMP): setup.py pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP) data

data:
	@if [ -f $(FMNIST)/train-images-idx3-ubyte.gz ]; then :; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	else echo "Fashion-MNIST not found in $(FMNIST) and no apt-get: install the Debian package dataset-fashion-mnist" >&2; exit 1; fi

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: setup lint
	$(VENV)/bin/pytest -q -p no:cacheprovider; rc=$$?; \
	if [ $$rc = 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

test-slow: setup
	$(VENV)/bin/pytest -q -p no:cacheprovider -m slow

demo: setup
	$(PY) -m tools.demo --workdir=$(WORKDIR)

bench: setup
	bash bench/run_all.sh

clean:
	rm -rf runs build *.egg-info
