# One task runner for developers and CI. Every target does its own set-up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   ?= demo-node

# Bytecode is cached in the venv, never beside the sources. The tests and the demo start
# a Python process for each node and command: where the environment says to write no
# bytecode (PYTHONDONTWRITEBYTECODE), each of them compiled intelpact again (0.3 s).
export PYTHONPYCACHEPREFIX := $(CURDIR)/$(VENV)/pycache
unexport PYTHONDONTWRITEBYTECODE

.PHONY: run test lint bench clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python scripts/demo.py $(DEMO)

# Two passes: everything (the store tests run on SQLite and PostgreSQL), then the
# TAXII, federation, people, attack and console suites again with every node on
# PostgreSQL. The PostgreSQL server is started by the tests (tests/pg.py); without
# PostgreSQL binaries those tests skip with the reason printed.
PG_SUITES := tests/interfaces/test_taxii.py tests/interfaces/test_taxii_inputs.py \
	tests/services/test_federation.py tests/services/test_people.py \
	tests/services/test_audit_partner.py tests/services/test_compromise.py \
	tests/services/test_controls.py tests/services/test_consent.py \
	tests/services/test_lifecycle.py tests/interfaces/test_attacks.py \
	tests/console/test_http.py tests/services/test_publish.py \
	tests/interfaces/test_served_properties.py tests/services/test_atomic_audit.py \
	tests/services/test_key_rotation.py tests/services/test_search_indexer.py \
	tests/services/test_federation_attacks.py tests/services/test_relabel.py \
	tests/services/test_event_macs.py tests/services/test_audit_head.py \
	tests/services/test_audit.py tests/interfaces/test_damaged_store.py \
	tests/services/test_read_only_commands.py tests/services/test_pin_while_serving.py \
	tests/services/test_delivery.py tests/services/test_public_host.py \
	tests/interfaces/test_unservable.py tests/interfaces/test_trusted_proxies.py

test: $(STAMP)
	$(BIN)/python -m pytest -q
	INTELPACT_TEST_DATABASE=postgresql $(BIN)/python -m pytest -q $(PG_SUITES)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/mypy

# The TAXII benchmark's peer, medallion 3.0.0, in its own environment: its pinned
# dependencies never touch .venv.
MEDALLION_VENV  := .venv-medallion
MEDALLION_STAMP := $(MEDALLION_VENV)/.installed

$(MEDALLION_STAMP):
	$(PYTHON) -m venv $(MEDALLION_VENV)
	$(MEDALLION_VENV)/bin/pip install --quiet --upgrade pip
	$(MEDALLION_VENV)/bin/pip install --quiet medallion==3.0.0
	touch $(MEDALLION_STAMP)

# The scale benchmark's second peer, OpenTAXII 0.9.3 served by gunicorn, in its own
# environment too, every package pinned (bench/opentaxii-requirements.txt).
OPENTAXII_VENV  := .venv-opentaxii
OPENTAXII_STAMP := $(OPENTAXII_VENV)/.installed

$(OPENTAXII_STAMP): bench/opentaxii-requirements.txt
	$(PYTHON) -m venv $(OPENTAXII_VENV)
	$(OPENTAXII_VENV)/bin/pip install --quiet --upgrade pip
	$(OPENTAXII_VENV)/bin/pip install --quiet -r bench/opentaxii-requirements.txt
	touch $(OPENTAXII_STAMP)

bench: $(STAMP) $(MEDALLION_STAMP) $(OPENTAXII_STAMP)
	$(BIN)/python bench/decisions.py
	$(BIN)/python bench/validate.py
	$(BIN)/python bench/taxii.py --medallion-python $(MEDALLION_VENV)/bin/python
	$(BIN)/python bench/federation.py
	$(BIN)/python bench/audit.py
	$(BIN)/python bench/partner.py
	$(BIN)/python bench/pull.py
	$(BIN)/python bench/gossip.py --backends sqlite,postgresql
	$(BIN)/python bench/fsync.py --dir .
	$(BIN)/python bench/scale.py --medallion-python $(MEDALLION_VENV)/bin/python \
		--opentaxii-python $(OPENTAXII_VENV)/bin/python
	$(BIN)/python bench/soak.py
	$(BIN)/python bench/mixed.py
	$(BIN)/python bench/versions.py --medallion-python $(MEDALLION_VENV)/bin/python
	$(BIN)/python bench/console.py
	$(BIN)/python bench/ais.py
	$(BIN)/python bench/relabel.py --backends sqlite,postgresql
	$(BIN)/python bench/plans.py --backends sqlite,postgresql

clean:
	rm -rf $(VENV) $(MEDALLION_VENV) $(OPENTAXII_VENV) $(DEMO) .pytest_cache .hypothesis
