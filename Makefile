# One command to run, one to test; each sets itself up on a fresh machine.
#   make run    the whole system on this machine: esg up (installs into .venv first; about 2 minutes)
#   make test   the whole test suite: import contracts, unit and integration tests
#   make bench  the planner and simulator benchmarks (figures, not pass/fail)
#   make fuzz   the seeded fuzz suite at full size: 2,000 CLI runs, 10,000 runtime requests, 4,000 metric pages
#   make evaluate  the evaluation of docs/EVALUATION.md: shipped workloads, then random ones of three families (about 7 minutes
#                  on 2 cores, and the extreme family's 60 took 226 s more on 2026-12-04)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test fuzz bench evaluate tools clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/esg up --out out/up

# Debian packages the tests use: real Prometheus (the scaler's integration
# test) and shellcheck (the cluster scripts).
TOOLS := prometheus shellcheck
tools:
	@missing=""; for t in $(TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; \
		else echo "warning:$$missing missing and not installable without root; their tests are skipped"; exit 0; fi; \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing; \
	fi

test: $(STAMP) tools
	$(BIN)/python -m pytest -q tests

fuzz: $(STAMP)
	FUZZ_CASES=2000 $(BIN)/python -m pytest -q -s tests/unit/test_fuzz.py

TORCH_STAMP := $(VENV)/.torch

$(TORCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,torch]'
	touch $(TORCH_STAMP)

bench: $(TORCH_STAMP)
	$(BIN)/python bench/planner.py
	$(BIN)/python bench/dag_quality.py
	$(BIN)/python bench/sim.py
	$(BIN)/python bench/runtime.py
	$(BIN)/python bench/scaler.py
	$(BIN)/python bench/control.py
	$(BIN)/python bench/tracking.py
	$(BIN)/python bench/tracking.py --tick-s 2 --step 3 --misses 0.03 --settings '{"busy_capacity": 100}'
	$(BIN)/python bench/ratelimit.py
	$(BIN)/python bench/live_share.py

evaluate: $(STAMP)
	$(BIN)/python bench/evaluate.py
	$(BIN)/python bench/robustness.py --cases 30 --first-seed 561 --ablation --describe \
		--json docs/evaluation/robustness.json
	$(BIN)/python bench/robustness.py --family wide --cases 100 --first-seed 1 --describe \
		--json docs/evaluation/robustness-wide.json
	$(BIN)/python bench/robustness.py --cases 100 --first-seed 1611 --profile-error 2 \
		--json docs/evaluation/robustness-profile-error.json
	$(BIN)/python bench/robustness.py --family extreme --cases 60 --first-seed 1 --describe \
		--json docs/evaluation/robustness-extreme.json
	$(BIN)/python bench/miss_causes.py --seeds 561-590

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .import_linter_cache *.egg-info
