# The two commands a newcomer needs: `make chat` and `make test`. Both build .venv from this repository's own files
# (pyproject.toml + constraints.txt, which pins the CPU build of torch) and are safe to run again.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --quiet --constraint constraints.txt
CHAT_ARGS ?=

.PHONY: chat test reliability lint typecheck clean

# Setup reports on stderr only, so `printf 'hi\n' | make chat` prints nothing but replies on stdout.
$(VENV)/.runtime: pyproject.toml constraints.txt
	@echo "Setting up $(VENV) (pip install -c constraints.txt -e .) ..." >&2
	@$(PYTHON) -m venv $(VENV) >&2
	@$(PIP) --editable . >&2
	@touch $@

$(VENV)/.dev: $(VENV)/.runtime
	@echo "Adding the dev tools to $(VENV) (pip install -c constraints.txt -e '.[dev]') ..." >&2
	@$(PIP) --editable ".[dev]" >&2
	@touch $@

## chat: set up, then talk to the shipped default model (history in SQLite in your user data directory)
chat: $(VENV)/.runtime
	@$(BIN)/chatbot chat $(CHAT_ARGS)

## test: set up with the dev tools, then lint, type-check and run the whole test suite
test: $(VENV)/.dev lint typecheck
	$(BIN)/pytest

## reliability: only the fault, bad-input and attack cases that RELIABILITY.md lists (part of `make test` too)
reliability: $(VENV)/.dev
	$(BIN)/pytest -m reliability

lint: $(VENV)/.dev
	$(BIN)/ruff check chatbot tests migrations bench
	$(BIN)/ruff format --check chatbot tests migrations bench

typecheck: $(VENV)/.dev
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
