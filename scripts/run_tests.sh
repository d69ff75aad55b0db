#!/usr/bin/env bash
# The whole test suite: lint, types, then pytest with a real vLLM server started once.
# Called by `make test` (after `make setup`) and so by CI's .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
export GRADIO_ANALYTICS_ENABLED=False TOKENIZERS_PARALLELISM=false
BIN=.venv/bin
DATA=${PAPERCHAT_DATA_DIR:-$PWD/data}
mkdir -p test-artifacts

echo "== ruff and mypy"
$BIN/ruff check .
$BIN/mypy

server_pid=""
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
trap stop_server EXIT
if [ -z "${PAPERCHAT_TEST_LLM_URL:-}" ]; then
  port=$($BIN/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  echo "== starting the vLLM server on 127.0.0.1:$port (log: test-artifacts/serve-llm.log)"
  setsid env PAPERCHAT_DATA_DIR="$DATA" PAPERCHAT_LLM_SERVE_PORT="$port" \
    PAPERCHAT_LLM_BASE_URL="http://127.0.0.1:$port/v1" \
    $BIN/paperchat serve-llm >test-artifacts/serve-llm.log 2>&1 &
  server_pid=$!
  export PAPERCHAT_TEST_LLM_URL="http://127.0.0.1:$port/v1"
  for _ in $(seq 1 300); do
    if curl -sf "$PAPERCHAT_TEST_LLM_URL/models" >/dev/null; then break; fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "the model server exited:"; tail -n 40 test-artifacts/serve-llm.log; exit 1
    fi
    sleep 2
  done
  curl -sf "$PAPERCHAT_TEST_LLM_URL/models" >/dev/null || { echo "model server not ready"; tail -n 40 test-artifacts/serve-llm.log; exit 1; }
fi

echo "== pytest (model server: $PAPERCHAT_TEST_LLM_URL)"
$BIN/pytest -v --durations=25 "$@"

echo "== benchmarks (small size)"
scripts/run_benchmarks.sh small
