# Everything a fresh machine needs: `make run` and `make test` install what they use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
KAFKA  := deploy/kafka

.DEFAULT_GOAL := help
.PHONY: help install browser kafka-jars kafka-up kafka-down run test test-unit test-reliability screenshots lint fmt schemas bench clean

help:
	@echo "make run        install, start the local Kafka broker and 'jobmanager serve' on :8080"
	@echo "make test       install, then run the whole test suite (starts its own broker)"
	@echo "make test-unit  unit tests only (no broker)"
	@echo "make browser    install Debian's chromium for the web UI's browser tests (make test does)"
	@echo "make test-reliability  the reliability suite, then docs/RELIABILITY.md from its figures"
	@echo "make screenshots  refresh docs/img/ (the README's web UI pictures) from a real run"
	@echo "make lint       ruff, mypy and the import-direction contract"
	@echo "make schemas    regenerate schemas/json/ from the pydantic models"
	@echo "make bench      benchmarks as ratios against raw baselines (writes bench/results, docs/PERFORMANCE.md)"
	@echo "make kafka-up / kafka-down   start / stop the local broker on 127.0.0.1:9092"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

# The web UI's browser tests drive Debian's Chromium (browser downloads are not possible here);
# installed only when missing, with sudo when not root.
browser:
	@test -x /usr/bin/chromium || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium; }

kafka-jars:
	bash $(KAFKA)/fetch.sh

kafka-up: kafka-jars
	bash $(KAFKA)/up.sh

kafka-down:
	bash $(KAFKA)/down.sh

run: install kafka-up
	@echo "Web UI: http://127.0.0.1:8080/  API: http://127.0.0.1:8080/api/jobmanager/v3/jobs  (token: $(VENV)/bin/jobmanager token)"
	@echo "Data and logs: ./.jobmanager (JOBMANAGER_HOME), broker log: $(KAFKA)/run/data/logs/server.log"
	$(VENV)/bin/jobmanager serve

test: install kafka-jars browser
	$(PY) -m pytest

test-unit: install
	$(PY) -m pytest tests/unit

# The reliability suite alone (also part of `make test`), then docs/RELIABILITY.md from the
# figures it measured; the docs are written even when a test fails, and say so.
test-reliability: install kafka-jars
	$(PY) -m pytest tests/reliability; status=$$?; $(PY) -m tests.reliability.report; exit $$status

screenshots: install kafka-jars browser
	JOBMANAGER_SCREENSHOTS_DIR=docs/img $(PY) -m pytest tests/browser -k screenshots

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict examples/follow_status.py
	$(VENV)/bin/lint-imports

schemas: install
	$(PY) -m worker.schema_export

# Ratios against raw baselines measured in the same run; starts and stops its own broker.
bench: install kafka-jars
	$(PY) -m bench

fmt: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .jobmanager .pytest_cache .mypy_cache .ruff_cache
