# manyi: two commands on a fresh machine, `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run test test-quick test-faults test-adversary venv lint bench clean demo-reset samples

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

## Start the whole system locally: broker, collector (SQLite), simulated Heze, control center.
run: $(STAMP)
	$(VENV)/bin/manyi run

## Run the test suite (builds its own virtualenv first).
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

## Everyday work: everything but the fault and adversary matrices, the slow tests and the browser tests (~4 min).
test-quick: $(STAMP)
	$(PY) -m pytest -m "not faults and not adversary and not slow and not browser" $(PYTEST_ARGS)

## Only the adversary matrix (attacks on deploy/'s configuration); `make test` runs it too.
test-adversary: $(STAMP)
	$(PY) -m pytest -m adversary $(PYTEST_ARGS)

## Only the fault matrix (real broker, collectors and terminals killed and restarted); `make test` runs it too.
test-faults: $(STAMP)
	$(PY) -m pytest -m faults $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m compileall -q manyi device collector analytics demo bench tests

## Benchmarks: print throughput, latency and memory against a baseline.
bench: $(STAMP)
	$(PY) -m bench

## Pictures of the monthly bulletin and the quarterly report, from the simulated city, into docs/samples/.
samples: $(STAMP)
	$(PY) -m demo.samples

demo-reset:
	rm -rf var/demo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
