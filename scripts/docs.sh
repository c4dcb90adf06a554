#!/usr/bin/env bash
# The documentation site: build it (strict: any warning or broken link fails) into site/, then serve it on
# http://127.0.0.1:${PORT:-8001}/ (Ctrl-C stops). `bash scripts/docs.sh build` only builds.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" NO_MKDOCS_2_WARNING=1
"$PY" -m mkdocs build --strict --site-dir site
if [ "${1:-serve}" = "build" ]; then exit 0; fi
echo "serving site/ on http://127.0.0.1:${PORT:-8001}/"
exec "$PY" -m http.server "${PORT:-8001}" --bind 127.0.0.1 --directory site
