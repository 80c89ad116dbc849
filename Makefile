# UrbanPulse: `make demo` runs the whole system locally, `make test` runs the whole suite.
# Both install what they need first (Debian packages with sudo when not root, a .venv).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# MicroPython's ESP32 stubs, kept apart from the venv's packages: they replace the stdlib.
MPY_STUBS := $(VENV)/micropython-stubs
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
# Debian package : a file it installs (to skip apt when already there).
# node/npm: the dashboard tests derive a JSON Schema from Grafana's published TypeScript types.
# systemd: only for `systemd-analyze verify` of the gateway unit (nothing runs systemd here).
SYSTEM_PACKAGES := mosquitto:/usr/sbin/mosquitto influxdb:/usr/bin/influxd \
                   victoria-metrics:/usr/bin/victoria-metrics nodejs:/usr/bin/node npm:/usr/bin/npm \
                   systemd:/usr/bin/systemd-analyze

.PHONY: setup system-packages venv lint typecheck test demo stack-up stack-down clean

setup: system-packages venv

system-packages:
	@missing=""; \
	for entry in $(SYSTEM_PACKAGES); do \
	  [ -e "$${entry#*:}" ] || missing="$$missing $${entry%%:*}"; \
	done; \
	$(PYTHON) -c 'import ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# ruff, and the architecture: layers, base dependencies of the service, no import circles
# (import-linter's contracts in pyproject.toml; the firmware package is found on firmware/).
lint: venv
	$(BIN)/ruff check .
	PYTHONPATH=firmware $(BIN)/lint-imports

$(MPY_STUBS)/.installed: $(VENV)/.installed
	$(BIN)/pip install -q --no-user --target $(MPY_STUBS) 'micropython-esp32-stubs==1.29.*'
	touch $@

typecheck: venv $(MPY_STUBS)/.installed
	$(BIN)/mypy
	$(BIN)/mypy --config-file firmware/mypy.ini

test: setup lint typecheck
	$(BIN)/pytest

demo: setup
	$(BIN)/urbanpulse demo

stack-up: setup
	$(BIN)/urbanpulse stack up

stack-down: venv
	$(BIN)/urbanpulse stack down

clean:
	-$(BIN)/urbanpulse stack down
	rm -rf $(VENV) .urbanpulse .mypy_cache .ruff_cache .pytest_cache
