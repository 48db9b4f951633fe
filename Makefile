# Two set-up commands: `make demo` and `make test`. Both create .venv and install
# the core and every plugin (editable), then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PLUGINS := $(sort $(wildcard plugins/*/pyproject.toml))
STAMP := $(VENV)/.install-stamp
PYTEST_ARGS ?=

.PHONY: install demo test lint bench clean

install: $(STAMP)
	@# byte-compile on every run, not only at install: with PYTHONDONTWRITEBYTECODE set, a
	@# module edited since would be compiled from source by every `flux` command and broker
	@# (`flux start true` about three times slower); up-to-date files cost nothing here
	@$(BIN)/python -m compileall -q -j0 core sdk shell imp plugins > /dev/null

$(STAMP): pyproject.toml setup.py $(PLUGINS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]' $(foreach p,$(dir $(PLUGINS)),-e ./$(p))
	@touch $(STAMP)

demo: install
	PATH=$(CURDIR)/$(BIN):$$PATH ./demo/demo.sh

test: install
	$(BIN)/ruff check core sdk shell imp plugins tests bench
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check core sdk shell imp plugins tests bench

bench: install  # `make bench ARGS=--quick` for short runs
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python bench/run.py $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
