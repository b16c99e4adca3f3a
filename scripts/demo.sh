#!/usr/bin/env bash
# Set up .venv (if missing) and run the demo: a takeover of a simulated 3-zone x 2-server cluster,
# end to end, on the embedded default. Ctrl-C stops everything. Extra arguments go to the demo
# (--exit: stop once the takeover ends).
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
echo "Installing ob-takeover and what the demo needs (Temporal's dev server, the cluster simulator) into .venv…"
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[demo]'
exec .venv/bin/python -m ob_takeover.demo "$@"
