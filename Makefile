# citynode: `make demo` runs the main job, `make test` runs every test. Both set everything up first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.citynode-installed

.PHONY: setup system-deps test test-fast demo bench lint firmware codecs chaos hil clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "citynode needs Python 3.10 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# Mosquitto and Node.js for the tests (installed with apt-get when missing and allowed; see the script).
system-deps:
	@scripts/system-deps.sh test

test: setup system-deps
	$(PY) codecs/generate.py --check
	$(PY) -m pytest -q -m "not chaos"

# The quick loop while developing: no end-to-end runs.
test-fast: setup
	$(PY) -m pytest -q -m "not slow and not chaos" -x

demo: setup
	@scripts/system-deps.sh demo
	$(VENV)/bin/citynode demo

bench: setup system-deps
	$(PY) -m bench

# The long fault-injection runs and >= 10^6 fuzz inputs; writes docs/RELIABILITY.md.
chaos: setup system-deps
	CITYNODE_CHAOS=full CITYNODE_RELIABILITY_REPORT=docs/RELIABILITY.md \
	CITYNODE_FUZZ_SUMMARY=bench/fuzz-summary.json $(PY) -m pytest -q -m chaos tests/chaos tests/fuzz

hil: setup
	$(PY) -m pytest -q hil_tests $(HIL_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(PY) codecs/generate.py --check

firmware: setup
	$(PY) firmware/build.py

codecs: setup
	$(PY) codecs/generate.py

clean:
	rm -rf firmware/build .pytest_cache .hypothesis .ruff_cache
