# kvbench: the two commands that do all set-up on a fresh machine are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PLAYBOOK := $(BIN)/ansible-playbook
RESULTS := results

.PHONY: venv demo test test-fast test-roles test-e2e lint analyze teardown render clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## demo: a real sweep on this machine (vLLM CPU build, tiny model, GuideLLM, Redis, Valkey, PCP), then analysis.
demo: venv
	$(PLAYBOOK) sweep.yml -i inventory/local $(DEMO_ARGS) || { rc=$$?; $(PLAYBOOK) playbooks/teardown.yml -i inventory/local; exit $$rc; }
	$(BIN)/kvbench analyze $(RESULTS)/latest --out $(RESULTS)/latest/analysis

## test: lint, unit tests, rendered manifests, and real services (Redis, Valkey, PCP, GuideLLM) through Ansible.
test: venv lint
	$(BIN)/python -m pytest -q -m "not e2e"

## test-e2e: the slow group CI also runs: real vLLM servers and a shortened real sweep (what `make demo` does).
test-e2e: venv
	$(BIN)/python -m pytest -q -m e2e

test-fast: venv
	$(BIN)/python -m pytest -q -m "not e2e and not roles"

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/ansible-lint --offline --profile production -q

analyze: venv
	$(BIN)/kvbench analyze $(RESULTS)/latest --out $(RESULTS)/latest/analysis

teardown: venv
	$(PLAYBOOK) playbooks/teardown.yml -i inventory/local

clean:
	rm -rf $(VENV) .work build *.egg-info
