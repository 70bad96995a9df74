# The README's commands. `make demo` and `make test` work on a fresh machine with only python3 installed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= $(CURDIR)/data
export DAGSTER_HOME ?= $(DATA)/dagster_home
# The demo's sample configuration, in the package; the repository's data/config gets a copy when it has none
# (`dms-pipelines demo` writes it itself; the rule below is for `make test`, `make dev` and `make validate`).
SAMPLE_CONFIG := dms_pipelines/devtools/demo/dms_pipelines.yaml
CONFIG := data/config/dms_pipelines.yaml

.PHONY: demo test lint format dev bench validate clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(CONFIG):
	mkdir -p $(@D)
	cp $(SAMPLE_CONFIG) $@
	@echo "wrote the demo's sample configuration to $@"

demo: $(STAMP)
	mkdir -p $(DAGSTER_HOME)
	$(BIN)/dms-pipelines demo

test: $(STAMP) | $(CONFIG)
	@command -v /usr/sbin/sshd >/dev/null 2>&1 || { \
	  echo "openssh-server is missing; installing it for the SFTP tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client >/dev/null; }
	@{ command -v redis-server >/dev/null 2>&1 && { command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }; } || { \
	  echo "redis-server or the PostgreSQL server is missing; installing them for the production-parts tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server postgresql >/dev/null; }
	mkdir -p $(DAGSTER_HOME)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

dev: $(STAMP) | $(CONFIG)
	mkdir -p $(DAGSTER_HOME)
	test -f $(DAGSTER_HOME)/dagster.yaml || cp dms_pipelines/orchestration/dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	@# The stock API simulator gets a free port (never another process's listener); dagster dev is pointed at it
	@# through DMS_AUTOTRADER_BASE_URL (base_url_env in the demo configuration).
	@TOKEN=$${DMS_AUTOTRADER_TOKEN:-demo-token}; URLFILE=$$(mktemp -u "$${TMPDIR:-/tmp}/dms-simulator-url.XXXXXX"); \
	  $(BIN)/python -m dms_pipelines.devtools.simulator --port 0 --token "$$TOKEN" --url-file "$$URLFILE" & SIM=$$!; \
	  trap 'kill $$SIM 2>/dev/null; wait $$SIM 2>/dev/null; rm -f "$$URLFILE"' EXIT; trap 'exit 130' INT TERM HUP; \
	  for i in $$(seq 200); do test -s "$$URLFILE" && break; kill -0 $$SIM 2>/dev/null || break; sleep 0.1; done; \
	  test -s "$$URLFILE" || { echo "make dev: the stock API simulator did not start (see above); not starting dagster dev" >&2; exit 1; }; \
	  URL=$$(cat "$$URLFILE"); echo "stock API simulator on $$URL; dagster dev uses it (DMS_AUTOTRADER_BASE_URL=$$URL)"; \
	  export DMS_AUTOTRADER_WEBHOOK_SECRET=$${DMS_AUTOTRADER_WEBHOOK_SECRET:-demo-autotrader-secret} DMS_GOOGLE_LEAD_KEY=$${DMS_GOOGLE_LEAD_KEY:-demo-google-key} DMS_WEBSITE_LEAD_KEY=$${DMS_WEBSITE_LEAD_KEY:-demo-website-key}; \
	  $(BIN)/python -m dms_pipelines.leads.receiver & RECEIVER=$$!; \
	  trap 'kill $$SIM $$RECEIVER 2>/dev/null; wait $$SIM $$RECEIVER 2>/dev/null; rm -f "$$URLFILE"' EXIT; \
	  echo "lead webhook receiver (pid $$RECEIVER) on the configured leads.receiver port; leads land in data/lead_landing"; \
	  DMS_AUTOTRADER_TOKEN=$$TOKEN DMS_AUTOTRADER_BASE_URL=$$URL $(BIN)/dagster dev -w workspace.yaml

bench: $(STAMP)
	$(BIN)/dms-pipelines bench --vehicles 10000 --vehicles 100000 --vehicles 1000000 --sftp 100 --sold-latency --hourly-job 1000000 --leads 10000 --leads 100000
	$(BIN)/dms-pipelines bench --vehicles 100000 --dealers 200
	@echo "identity: 200,000 DMS customers and 20,000 leads with planted truth, then 500 more (precision, recall, review share, times):"
	$(BIN)/python -m dms_pipelines.devtools.identity_bench bench
	@echo "the identity stage on a real SQLite file: the same people stored, identified (seeding), then 500 more leads:"
	$(BIN)/python -m dms_pipelines.devtools.identity_bench stage
	@echo "images: 100,000 image URLs against the local image server, checked the first time, then again (all unchanged):"
	$(BIN)/python -m dms_pipelines.devtools.image_bench --images 100000
	@echo "the stateful test of exports, faults and runs, at length (make test runs 12 sequences):"
	DMS_STATEFUL_EXAMPLES=200 $(BIN)/python -m pytest -q -p no:cacheprovider -o addopts="" --timeout 3000 dms_pipelines_tests/pipeline/test_stateful.py

validate: $(STAMP) | $(CONFIG)
	mkdir -p $(DAGSTER_HOME)
	$(BIN)/dagster definitions validate -w workspace.yaml

clean:
	rm -rf data/inbox data/landing data/lead_inbox data/lead_landing data/crm_drop data/outbox data/state data/warehouse data/warehouse.duckdb data/bench data/dagster_home
