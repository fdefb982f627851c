# One entry point for people and CI. `make serve` and `make test` each create .venv when it is missing
# (or when pyproject.toml changed), install the project with its dev extras, and run.
# Python 3.11 or newer: python3.11 when it is on PATH, else python3 (checked when the venv is created).
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROTO_DIR := protos
PROTO_OUT := protos/nixlookup/v1
PROTOS := $(wildcard $(PROTO_OUT)/*.proto)

.PHONY: help venv serve test lint typecheck unit proto proto-check bench guard clean

help:
	@echo "make serve      start the server on 127.0.0.1:50051 (synthetic register unless NIXLOOKUP_REGISTER is set)"
	@echo "make test       lint, type-check, run the test suite and the benchmark guard"
	@echo "make proto      regenerate the committed protobuf/gRPC code and nixlookup.v1.enums"
	@echo "make bench      run the core benchmark (nixlookup-bench core)"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "nixlookup needs Python >= 3.11; set PYTHON=/path/to/python3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

serve: $(STAMP)
	$(BIN)/nixlookup-server serve --data-dir $${NIXLOOKUP_DATA_DIR:-data}

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy -p nixlookup.v1 -p nixlookup.server -p nixlookup.client -p nixlookup.replica -p nixlookup.bench

proto: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m grpc_tools.protoc -I $(PROTO_DIR) \
		--python_out=$(PROTO_DIR) --mypy_out=$(PROTO_DIR) \
		--grpc_python_out=$(PROTO_DIR) --mypy_grpc_out=$(PROTO_DIR) \
		$(PROTOS)
	$(BIN)/python $(PROTO_DIR)/generate_enums.py $(PROTO_OUT)/enums.py

unit: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint typecheck unit guard

guard: $(STAMP)
	$(BIN)/nixlookup-bench guard

bench: $(STAMP)
	$(BIN)/nixlookup-bench core

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build *.egg-info
