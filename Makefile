# The targets README, CI and developers all run. `make test` and `make run` set everything up.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install lint typecheck test test-fast test-offline test-live run bench bench-quick screenshots tools clean

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or make PYTHON=python3)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

install: $(STAMP) ## create .venv from the lock file

tools: ## Chromium (browser tests) and docker-compose (compose check), via apt-get; needs root
	@scripts/ensure-test-tools

lint: install ## ruff lint + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install ## mypy --strict on the packages
	$(BIN)/mypy

# The suite in TEST_PROCESSES pytest processes (pytest-xdist): most tests wait on real workers
# and the fake, not on the CPU. Tests marked `serial` assert a rate or a latency, so they run
# alone afterwards, where other tests cannot starve them of CPU.
TEST_PROCESSES ?= 4

test: install tools lint typecheck test-offline ## everything CI runs: lint, types, the offline unit run, the whole suite
	$(BIN)/python -m pytest -q -n $(TEST_PROCESSES) -m "not serial"
	$(BIN)/python -m pytest -q -m serial

test-fast: install ## unit tests: no service but Redis, for those marked redis (started if none answers)
	$(BIN)/python -m pytest -q tests/unit

# Redis pointed at a closed port, so a unit test that reaches Redis without being marked fails
test-offline: install ## unit tests that need no service at all (-m "not redis"): no Redis, only loopback
	EVENTQ_TEST_REDIS_URL=redis://127.0.0.1:1/0 $(BIN)/python -m pytest -q -m "not redis" tests/unit

# The contract suite against the real HubSpot: needs a test account's private-app token in
# EVENTQ_LIVE_HUBSPOT_TOKEN, else it says it skipped and why (exit 0). See docs/going-live.md.
test-live: install ## the contract suite against the real HubSpot (EVENTQ_LIVE_HUBSPOT_TOKEN), recorded
	EVENTQ_CONTRACT_TARGET=live $(BIN)/python -m pytest -q tests/contract

run: install ## the whole local stack: Redis, fake HubSpot (sandbox), worker, Flower, HTTP (RUN_ARGS=--keep keeps the sandbox's data)
	$(BIN)/eventq run $(RUN_ARGS)

bench: install ## the full benchmark (several minutes); writes bench/results/
	$(BIN)/python -m bench

bench-quick: install ## a short smoke run of the benchmark
	$(BIN)/python -m bench --quick

screenshots: install tools ## PNGs of Flower and the admin page into docs/img/
	$(BIN)/python scripts/screenshots.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
