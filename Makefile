# Every target installs what is missing first (scripts/setup.sh is idempotent and fast when done).
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup setup-test run test eval calibrate bench lint

setup:
	@bash scripts/setup.sh

setup-test:
	@bash scripts/setup.sh --test

run: setup
	$(VENV)/bin/zhixun run

test: setup-test
	$(PY) -m pytest $(PYTEST_ARGS)

eval: setup
	$(PY) -m bench.eval_retrieval
	$(PY) -m bench.eval_intents

calibrate: setup
	$(PY) -m bench.eval_retrieval --calibrate

bench: setup
	$(PY) -m bench.chat_latency
	$(PY) -m bench.queue_latency

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy zhixun bot knowledge_base connectors console
