# The two commands of the README: `make demo` (the main job end to end) and `make test` (the tests).
# Both work on a fresh machine with Python 3.11 and make: they create the virtualenv from the lock file first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION := 0.13.9
UV := .tools/bin/uv
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test test-integration airflow setup system-deps services bench clean

setup: $(STAMP)

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# The packages' bytecode is compiled once, at install: with PYTHONDONTWRITEBYTECODE set (this machine sets it) every
# process would otherwise compile pandas, pyarrow and Airflow from source again (1-2 s of each task's start).
$(STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON)
	touch $(STAMP)

system-deps:
	bash scripts/system-deps.sh

# PostgreSQL and Redis on 127.0.0.1 for the integration tests (started or installed only when missing).
services:
	bash scripts/ci-services.sh

demo: setup
	$(VENV)/bin/duizhang demo

# pytest exits 5 when it collected no test: that is a failure, never a green run.
test: setup system-deps
	$(VENV)/bin/python -m pytest -m "not integration" -q; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "no tests were collected" >&2; exit 1; fi; exit $$rc

test-integration: setup system-deps services
	$(VENV)/bin/python -m pytest -m integration -q; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "no integration tests were collected" >&2; exit 1; fi; exit $$rc

airflow: setup
	$(VENV)/bin/python -m duizhang.standalone

bench: setup
	$(VENV)/bin/python bench/run.py

clean:
	rm -rf var .pytest_cache
