# The README's commands. `make demo` and `make test` work on a fresh machine with only python3 installed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= $(CURDIR)/data
export DAGSTER_HOME ?= $(DATA)/dagster_home

.PHONY: demo test dev bench validate clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	mkdir -p $(DAGSTER_HOME)
	$(BIN)/dms-pipelines demo

test: $(STAMP)
	@command -v /usr/sbin/sshd >/dev/null 2>&1 || { \
	  echo "openssh-server is missing; installing it for the SFTP tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client >/dev/null; }
	mkdir -p $(DAGSTER_HOME)
	$(BIN)/python -m pytest -q

dev: $(STAMP)
	mkdir -p $(DAGSTER_HOME)
	test -f $(DAGSTER_HOME)/dagster.yaml || cp data/config/dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	@echo "starting the Auto Trader-style stock API simulator on 127.0.0.1:8765 (the demo configuration points there)"
	DMS_AUTOTRADER_TOKEN=$${DMS_AUTOTRADER_TOKEN:-demo-token} $(BIN)/python -m dms_pipelines.delivery.simulator --port 8765 --token $${DMS_AUTOTRADER_TOKEN:-demo-token} & SIM=$$!; \
	  trap "kill $$SIM" EXIT; DMS_AUTOTRADER_TOKEN=$${DMS_AUTOTRADER_TOKEN:-demo-token} $(BIN)/dagster dev -w workspace.yaml

bench: $(STAMP)
	$(BIN)/dms-pipelines bench --vehicles 10000 --vehicles 100000 --vehicles 1000000 --sftp 100 --sold-latency --hourly-job 1000000
	$(BIN)/dms-pipelines bench --vehicles 100000 --dealers 200

validate: $(STAMP)
	mkdir -p $(DAGSTER_HOME)
	$(BIN)/dagster definitions validate -w workspace.yaml

clean:
	rm -rf data/inbox data/landing data/outbox data/state data/warehouse data/warehouse.duckdb data/bench data/dagster_home
