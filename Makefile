# The two commands a newcomer needs: `make run` and `make test`. Each sets up what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Test processes: most tests wait on real services and child processes, not on the CPU, so
# more workers than cores pays off; each gets its own Redis database and RabbitMQ vhost.
TEST_WORKERS ?= 3

.PHONY: run test test-fast lint bench clean browser bench-tools netns-tools compose-tools

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

## Run Tidegate on this machine: embedded Redis, SQLite, simulator, API on :8000, a worker.
run: $(BIN)/.installed
	$(BIN)/tidegate up

## The dashboard's browser tests drive Debian's chromium (browsers cannot be downloaded here,
## so never `playwright install`); installed once, when missing.
CHROMIUM ?= /usr/bin/chromium
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium

browser: $(BIN)/.installed $(CHROMIUM)

## The multi-host test (tests/multihost) makes network namespaces: it needs iproute2's `ip` and
## util-linux's `unshare` (and root, which CI has); installed once, when missing.
netns-tools:
	@command -v ip >/dev/null && command -v unshare >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	  iproute2 util-linux; }

## tests/fleet checks deploy/compose.yaml with `docker-compose config` (Debian's docker-compose;
## no container engine is needed for that); installed once, when missing.
compose-tools:
	@command -v docker-compose >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	  docker-compose; }

## Run the whole test suite (unit, contract, integration, end-to-end, fault injection, browser).
test: lint browser netns-tools compose-tools
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup --ignore=tests/browser
	@# The browser tests time a real page: they run alone, once the rest is done.
	$(BIN)/pytest tests/browser

## The quick part: everything but the slow end-to-end and fault scenarios.
test-fast: $(BIN)/.installed
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup -m "not slow"

## Static checks: ruff everywhere, mypy --strict on the framework-free core.
lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy --strict src/tidegate/core

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

## What benchmarks/ needs beyond the tests: wrk (Debian), the baseline's Flask and Gunicorn, and
## the independent provider mock (llmock).
bench-tools: $(BIN)/.installed
	@command -v wrk >/dev/null || { if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq wrk; }
	$(BIN)/pip install --quiet -e '.[test,bench]'
