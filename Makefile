# streamchat — the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench soak clean install

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Exactly the locked releases (hashes checked), then streamchat itself. Reinstalled only
# when the lock or pyproject changes, so a second `make run` starts in seconds.
$(STAMP): requirements.lock pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# After changing pyproject.toml's dependencies: `make lock` pins what changed and keeps the
# other pins; `make lock LOCK_ARGS=--upgrade` moves everything to its newest allowed release
# (then run `make test` and `make bench`).
lock: | $(BIN)/python
	$(BIN)/python -m pip install --quiet 'uv>=0.13,<1'
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes $(LOCK_ARGS) \
		--custom-compile-command "make lock" \
		--python-version 3.11 --python-platform x86_64-unknown-linux-gnu -o requirements.lock

install: $(STAMP)

run: $(STAMP)
	$(BIN)/streamchat serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

# streamchat against Node Socket.IO, python-socketio and a bare aiohttp loop (docs/benchmarks.md).
# Installs the peers into bench/ on first use; ~10 minutes. BENCH_ARGS narrows it, e.g.
# BENCH_ARGS="--only capacity --servers streamchat,socketio".
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# 200 clients chat in 10 rooms for 10 minutes through random disconnections; every acked
# message must reach every subscriber exactly once and the server's RSS must stay flat
# (docs/benchmarks.md, "Soak"). SOAK_ARGS changes it, e.g. SOAK_ARGS="--minutes 2 --clients 100".
soak: $(STAMP)
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

.PHONY: bench-smoke
bench-smoke: $(STAMP)
	$(BIN)/python bench/run.py --smoke --servers streamchat --out bench/results/smoke.json

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
