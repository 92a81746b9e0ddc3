# Two commands for users: `make run` (the demo on local emulators) and
# `make test` (the whole suite). Both set up what is missing first, and do
# nothing more when nothing changed.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_STAMP := .cache/apt.stamp
APT_PACKAGES := golang-go golang-google-cloud-dev prometheus docker-compose chromium chromium-driver
EMULATOR_BIN := deploy/emulators/bin
EMULATORS := $(EMULATOR_BIN)/pstest $(EMULATOR_BIN)/bttest
GO_ENV := GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS=-mod=mod GOCACHE=$(CURDIR)/.cache/go-build
PROTOS := $(wildcard protos/fraudscore/v1/*.proto)

.PHONY: setup run test lint unit integration protos bench clean

setup: $(STAMP) $(EMULATORS) fraudscore/v1/__init__.py

# Debian packages: the Go toolchain and Google's emulator sources, Prometheus.
$(APT_STAMP):
	@mkdir -p $(dir $@)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@touch $@

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.lock
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

$(EMULATOR_BIN)/%: deploy/emulators/%/main.go | $(APT_STAMP)
	@mkdir -p $(EMULATOR_BIN)
	cd deploy/emulators && $(GO_ENV) go build -o bin/$* ./$*

fraudscore/v1/__init__.py: $(PROTOS) scripts/gen_protos.py | $(STAMP)
	$(PY) scripts/gen_protos.py

protos: $(STAMP)
	$(PY) scripts/gen_protos.py

lint: setup
	$(PY) scripts/gen_protos.py --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

unit: setup
	$(VENV)/bin/pytest -m "not integration" $(PYTEST_ARGS)

integration: setup
	$(VENV)/bin/pytest -m integration $(PYTEST_ARGS)

test: lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

run: setup
	$(VENV)/bin/fraudscore demo

bench: setup
	$(PY) -m bench.train
	$(PY) -m bench.scorer

clean:
	rm -rf $(VENV) .cache $(EMULATOR_BIN) .pytest_cache .mypy_cache .ruff_cache
