#!/usr/bin/env bash
# The test suite: lint, format check, then the unit tests. Run scripts/setup.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks
.venv/bin/python -m pytest -q "$@"
