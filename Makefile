# Everything a fresh machine needs: `make run` and `make test` install what they use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
KAFKA  := deploy/kafka

.DEFAULT_GOAL := help
.PHONY: help install kafka-jars kafka-up kafka-down run test test-unit lint fmt schemas bench clean

help:
	@echo "make run        install, start the local Kafka broker and 'jobmanager serve' on :8080"
	@echo "make test       install, then run the whole test suite (starts its own broker)"
	@echo "make test-unit  unit tests only (no broker)"
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

kafka-jars:
	bash $(KAFKA)/fetch.sh

kafka-up: kafka-jars
	bash $(KAFKA)/up.sh

kafka-down:
	bash $(KAFKA)/down.sh

run: install kafka-up
	@echo "Gateway: http://127.0.0.1:8080/api/jobmanager/v3/jobs  (token: $(VENV)/bin/jobmanager token)"
	@echo "Data and logs: ./.jobmanager (JOBMANAGER_HOME), broker log: $(KAFKA)/run/data/logs/server.log"
	$(VENV)/bin/jobmanager serve

test: install kafka-jars
	$(PY) -m pytest

test-unit: install
	$(PY) -m pytest tests/unit

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
