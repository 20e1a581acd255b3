# Two commands on a fresh machine: `make run` (demo gateway) and `make test` (everything CI runs).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: setup system-deps claude-code codex run test lint unit bench smoke-image clean compose-up compose-down

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

# Chromium, ChromeDriver, Prometheus and promtool from Debian, for the tests that drive them.
system-deps:
	bash scripts/system-deps.sh

# The pinned Claude Code CLI, in .tools/claude-code (npm, never global), for its end-to-end tests.
claude-code: system-deps
	bash scripts/claude-code.sh

# The pinned Codex CLI, in .tools/codex (npm, never global), for its end-to-end tests.
codex: system-deps
	bash scripts/codex.sh

# `make run PORT=8080` for another port than 3000.
run: setup
	@$(BIN)/octoroute serve --demo $(if $(PORT),--port $(PORT))

lint: setup
	$(BIN)/ruff format --check src tests bench training
	$(BIN)/ruff check src tests bench training
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint system-deps claude-code codex
	$(BIN)/pytest -q

unit: setup
	$(BIN)/pytest -q tests/unit

# Three replicas, Redis, nginx, Prometheus and Grafana (deploy/compose/README.md); needs Docker.
COMPOSE = docker compose -f deploy/compose/compose.yaml

compose-up:
	$(COMPOSE) up -d --build

compose-down:
	$(COMPOSE) down

bench: setup
	$(BIN)/python bench/overhead.py

# Builds deploy/Dockerfile and runs the image (needs a running Docker daemon; not part of `make test`).
smoke-image:
	bash deploy/smoke-image.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .llm artifacts .tools
