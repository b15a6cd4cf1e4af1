# The one way to run things, for people and CI alike.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install services run test test-unit test-integration test-uvicorn-floor lint typecheck bench soak dist clean

install: $(STAMP)

$(STAMP): pyproject.toml plugins/realtime-mq-rabbitmq/pyproject.toml plugins/realtime-mq-kafka/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q -e plugins/realtime-mq-rabbitmq
	$(PY) -m pip install -q -e plugins/realtime-mq-kafka
	touch $(STAMP)

# Embedded mode: in-process broker and presence, nothing but Python needed.
# `make run BROADCAST_MQ_TYPE=redis PRESENCE_STORE=redis` runs on Redis instead. The installed
# command, not `python -m realtime`: -m puts the current directory on the import path.
BROADCAST_MQ_TYPE ?= memory
PRESENCE_STORE ?= memory
run: install
	BROADCAST_MQ_TYPE=$(BROADCAST_MQ_TYPE) PRESENCE_STORE=$(PRESENCE_STORE) $(VENV)/bin/realtime serve

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

# The direct write path (realtime/server/direct.py) uses uvicorn's internals, so its tests also
# run on the lowest uvicorn pyproject.toml allows, read from there. A second small venv sees
# the project's install through a .pth and holds only that uvicorn, which comes first on its
# path.
VENV_FLOOR ?= .venv-floor
UVICORN_FLOOR := $(shell sed -n 's/^ *"uvicorn>=\([0-9.]*\),.*/\1/p' pyproject.toml)
FLOOR_STAMP := $(VENV_FLOOR)/.installed-$(UVICORN_FLOOR)
DIRECT_PATH_TESTS := tests/server tests/presence/test_embedded.py
PURELIB := import sysconfig; print(sysconfig.get_paths()["purelib"])

$(FLOOR_STAMP): $(STAMP)
	rm -rf $(VENV_FLOOR)
	$(PYTHON) -m venv $(VENV_FLOOR)
	echo "import site; site.addsitedir('$$($(PY) -c '$(PURELIB)')')" \
		> "$$($(VENV_FLOOR)/bin/python -c '$(PURELIB)')/realtime-project.pth"
	$(VENV_FLOOR)/bin/python -m pip install -q --no-deps 'uvicorn==$(UVICORN_FLOOR)'
	touch $@

test-uvicorn-floor: $(FLOOR_STAMP) services
	$(VENV_FLOOR)/bin/python -c 'import sys, uvicorn; \
		sys.exit(None if uvicorn.__version__ == "$(UVICORN_FLOOR)" else \
		f"uvicorn {uvicorn.__version__} is not the floor $(UVICORN_FLOOR)")'
	$(VENV_FLOOR)/bin/python -m pytest $(DIRECT_PATH_TESTS) $(PYTEST_ARGS)

# Wheels of the core and every plugin in dist/, so that the extras resolve from the repo:
#   make dist && pip install --find-links dist 'realtime-mq[kafka,rabbitmq]'
# setuptools' build/ directories are emptied first: a module deleted from the tree would
# otherwise stay there and be packed into the wheel again.
BUILD_DIRS := build plugins/realtime-mq-kafka/build plugins/realtime-mq-rabbitmq/build tests/example_plugin/build
dist: install
	rm -rf $(BUILD_DIRS)
	$(PY) -m pip wheel -q --no-deps -w dist . plugins/realtime-mq-kafka plugins/realtime-mq-rabbitmq

# Benchmarks (needs Go for the load generator): `make bench BENCH_ARGS="--quick"`.
bench: install
	$(PY) -m bench $(BENCH_ARGS)

# The same scenarios against Centrifugo and the Go seed in the same run (bench/peers.py):
# `make bench-peers SEED_SOURCE=path/to/seed` (its source tree or git directory; without it
# the seed is cloned). Centrifugo is built once into bench/.peers/; a peer that cannot be
# built is skipped with a message.
.PHONY: bench-peers
PEERS ?= centrifugo,seed
bench-peers: install
	$(PY) -m bench --peers $(PEERS) $(if $(SEED_SOURCE),--seed-source $(SEED_SOURCE)) $(BENCH_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

# The soak (bench/soak.py): two gateways on a real Redis, churning connections that subscribe,
# publish and join presence; fails unless nothing is lost, presence is exact, RSS and fds stay
# flat. `make soak SOAK_SECONDS=60 SOAK_CONNECTIONS=600` is CI's run (.ci/run).
SOAK_SECONDS ?= 600
SOAK_CONNECTIONS ?= 1000
soak: install services
	$(PY) -m bench.soak --duration $(SOAK_SECONDS) --connections $(SOAK_CONNECTIONS) $(SOAK_ARGS)

clean:
	rm -rf $(VENV) $(VENV_FLOOR) dist $(BUILD_DIRS) .pytest_cache .mypy_cache .ruff_cache
