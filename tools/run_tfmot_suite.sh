#!/usr/bin/env bash
# Runs the team's TF-MOT 0.8.1 suite runner (../shared/peer/run-tfmot-suite) against
# prune_sign_flip, with tools/tfmot-extra-deviations.txt added to its list of tests we
# fail on purpose. The runner and TF-MOT's test files stay where they are (read-only);
# a temporary copy gets the longer list.
#   tools/run_tfmot_suite.sh [PYTHON]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEER=${TFMOT_PEER_DIR:-$ROOT/../shared/peer}
PY=${1:-$ROOT/.venv/bin/python}
if [ ! -x "$PEER/run-tfmot-suite" ]; then
  echo "note: $PEER/run-tfmot-suite not found; TF-MOT's own suite not run"
  exit 0
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cp -r "$PEER"/. "$TMP"/
chmod -R u+w "$TMP"
grep -v '^#' "$ROOT/tools/tfmot-extra-deviations.txt" >> "$TMP/expected-deviations.txt"
cd "$ROOT"
"$TMP/run-tfmot-suite" "$PY"
