# The one way to run things, for people and CI alike.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install services run test test-unit test-integration lint typecheck bench dist clean

install: $(STAMP)

$(STAMP): pyproject.toml plugins/realtime-mq-rabbitmq/pyproject.toml plugins/realtime-mq-kafka/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q -e plugins/realtime-mq-rabbitmq
	$(PY) -m pip install -q -e plugins/realtime-mq-kafka
	touch $(STAMP)

# Embedded mode: in-process broker and presence, nothing but Python needed.
# `make run BROADCAST_MQ_TYPE=redis PRESENCE_STORE=redis` runs on Redis instead.
BROADCAST_MQ_TYPE ?= memory
PRESENCE_STORE ?= memory
run: install
	BROADCAST_MQ_TYPE=$(BROADCAST_MQ_TYPE) PRESENCE_STORE=$(PRESENCE_STORE) $(PY) -m realtime serve

# The real servers the integration tests start natively: redis-server and rabbitmq-server
# (Debian packages) and Kafka's broker jars. Idempotent, and quick once they are there.
services:
	scripts/install-services

test: install services
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: install
	$(PY) -m pytest -m "not integration" $(PYTEST_ARGS)

test-integration: install services
	$(PY) -m pytest -m integration $(PYTEST_ARGS)

# Wheels of the core and every plugin in dist/, so that the extras resolve from the repo:
#   make dist && pip install --find-links dist 'realtime-mq[kafka,rabbitmq]'
dist: install
	$(PY) -m pip wheel -q --no-deps -w dist . plugins/realtime-mq-kafka plugins/realtime-mq-rabbitmq

# Benchmarks (needs Go for the load generator): `make bench BENCH_ARGS="--quick"`.
bench: install
	$(PY) -m bench $(BENCH_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) dist .pytest_cache .mypy_cache .ruff_cache
