#!/usr/bin/env bash
# The whole test suite: lint, types, then pytest with a real vLLM server started once.
# Called by `make test` (after `make setup`) and so by CI's .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
export GRADIO_ANALYTICS_ENABLED=False TOKENIZERS_PARALLELISM=false
BIN=.venv/bin
export PAPERCHAT_DATA_DIR=${PAPERCHAT_DATA_DIR:-$PWD/data}
mkdir -p test-artifacts

echo "== ruff and mypy"
$BIN/ruff check .
$BIN/mypy

# shellcheck source=scripts/lib.sh
. scripts/lib.sh
trap stop_llm EXIT
if [ -z "${PAPERCHAT_TEST_LLM_URL:-}" ]; then
  echo "== starting the model server (paperchat serve-llm --port 0; log: test-artifacts/serve-llm.log)"
  start_llm test-artifacts/serve-llm.log --port 0
  export PAPERCHAT_TEST_LLM_URL=$LLM_URL
fi

echo "== pytest (model server: $PAPERCHAT_TEST_LLM_URL)"
$BIN/pytest -v --durations=25 "$@"

echo "== benchmarks (small size)"
scripts/run_benchmarks.sh small
