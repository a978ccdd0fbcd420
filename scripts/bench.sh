#!/bin/sh
# Run the benchmark suite (bench/) as root on a Debian 12 host: sets up the
# same packages and virtualenv as the tests, adds matplotlib for the plot,
# then runs `python -m bench` with any arguments given here, e.g.
#   sudo ./scripts/bench.sh                  # the full run (~20 min)
#   sudo ./scripts/bench.sh --quick          # a smoke run
#   sudo ./scripts/bench.sh --only dataplane
# Results: bench/results/report.{md,json,png}.
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
VENV=${OVSGRE_TEST_VENV:-$REPO/.venv}

OVSGRE_SETUP_ONLY=1 sh "$REPO/scripts/test.sh"
"$VENV/bin/pip" install -q "matplotlib>=3.5"

cd "$REPO"
PATH="$VENV/bin:$PATH" exec "$VENV/bin/python" -m bench "$@"
