# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN := tools/loopback_only.sh
DEMO_DIR ?= out/demo

.PHONY: install test demo lint cuda-check bench clean

$(STAMP): requirements.txt requirements-train.txt requirements-bench.txt setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	# training and benchmark extras (the node needs neither): installed so that their tests run, not skip
	$(BIN)/pip install -q --no-deps -r requirements-train.txt -r requirements-bench.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

test: install
	$(BIN)/ruff check .
	$(RUN) $(BIN)/python -m pytest -q test

demo: install
	$(RUN) $(BIN)/casmtr-vo demo --out $(DEMO_DIR)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

cuda-check: install
	$(BIN)/python cuda/compile_check.py

bench: install
	$(RUN) $(BIN)/casmtr-vo bench

clean:
	rm -rf $(VENV) out build *.egg-info
