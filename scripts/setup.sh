#!/usr/bin/env bash
# One-time (and idempotent) set-up on a fresh machine: a virtual environment in .venv with resdense and its
# test tools, and Debian's copy of Fashion-MNIST when we can install it (root). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
# torchvision (used by the parity tests and the seed baseline) imports only with this pair on these
# machines; both wheels lie on the machine's disk. Elsewhere any torch >= 2.1 does.
if ! .venv/bin/python -c "import torch, torchvision" >/dev/null 2>&1; then
    .venv/bin/pip install --quiet --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1"
fi
.venv/bin/pip install --quiet --disable-pip-version-check -e ".[dev]"

# Fashion-MNIST from Debian (the same content as the official files); without it resdense downloads them.
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) \
        >/dev/null 2>&1 || echo "setup: dataset-fashion-mnist not installed; resdense will download the data" >&2
fi
# Debian's chromium and its driver, for the test that drives resdense serve's page in a real browser
if ! command -v chromedriver >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
        >/dev/null 2>&1 || echo "setup: chromium not installed; the browser test of the page will skip" >&2
fi
echo "setup: ready (.venv)"
