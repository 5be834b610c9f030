# The two commands a newcomer needs:  `make demo`  and  `make test`.
# Both create .venv and install the pinned requirements on first use.
# Python 3.11, 3.12 or 3.13: python3 when it is one of them, else the newest found on the PATH.
# Override with  make PYTHON=/path/to/python3.x
SUPPORTED := import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))
PYTHON ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
	$$p -c '$(SUPPORTED)' >/dev/null 2>&1 && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast lint bench clean

# pip installs only uv (its pin is in requirements-dev.txt); uv installs the same pins as pip
# would, many times faster.
$(BIN)/.installed: requirements.txt requirements-dev.txt pyproject.toml client/pyproject.toml
	@test -x $(BIN)/python || { test -n "$(PYTHON)" && $(PYTHON) -c '$(SUPPORTED)'; } || { \
	  echo "make: no supported Python found: notify-worker needs Python 3.11, 3.12 or 3.13."; \
	  echo "  Install one (Debian/Ubuntu: apt-get install python3 python3-venv; or pyenv),"; \
	  echo "  or name it: make PYTHON=/path/to/python3.12"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check "$$(grep '^uv==' requirements-dev.txt)"
	$(BIN)/uv pip install -q --python $(BIN)/python -r requirements-dev.txt
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e . -e ./client
	touch $@

demo: $(BIN)/.installed
	$(BIN)/notify-worker demo

# The tests run in parallel xdist workers, each with its own Redis and S3 (tests/conftest.py
# groups those that must not run side by side and hands out the longest first).
TEST_WORKERS ?= 3
PYTEST_XDIST := -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

test: $(BIN)/.installed
	$(BIN)/python -m pytest $(PYTEST_XDIST) --durations=20

test-fast: $(BIN)/.installed
	$(BIN)/python -m pytest $(PYTEST_XDIST) -m "not slow"

lint: $(BIN)/.installed
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports --no-logo

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .import_linter_cache *.egg-info
