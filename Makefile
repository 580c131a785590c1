# One command to run, one to test; each sets itself up on a fresh machine.
#   make run    plan the example workflows (installs into .venv first)
#   make test   the whole test suite: import contracts, unit and integration tests
#   make bench  the planner and simulator benchmarks (figures, not pass/fail)
#   make evaluate  the standard evaluation of docs/EVALUATION.md (about 2 minutes)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
EXAMPLES := image traffic video text
RATE ?= 200

.PHONY: run test bench evaluate clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	@for w in $(EXAMPLES); do \
		$(BIN)/esg plan --workflow examples/workflows/$$w.yaml --profiles examples/profiles/synthetic.json --rate $(RATE); \
		status=$$?; [ $$status -eq 0 ] || [ $$status -eq 3 ] || exit $$status; echo; \
	done
	$(BIN)/esg simulate --workload examples/workloads/mixed.yaml --profiles examples/profiles/synthetic.json \
		--policies all --out out/mixed

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

bench: $(STAMP)
	$(BIN)/python bench/planner.py
	$(BIN)/python bench/dag_quality.py
	$(BIN)/python bench/sim.py

evaluate: $(STAMP)
	$(BIN)/python bench/evaluate.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .import_linter_cache *.egg-info
