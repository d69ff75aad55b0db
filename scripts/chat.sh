#!/usr/bin/env bash
# `make chat` after setup and ingest: use the model server at llm.base_url if one answers,
# else start `paperchat serve-llm` in the background and wait until it is healthy; then
# open the chat (`paperchat chat`, arguments passed on). A server started here is stopped
# when the chat ends (Ctrl-C, error or normal exit).
set -euo pipefail
cd "$(dirname "$0")/.."
export GRADIO_ANALYTICS_ENABLED=False TOKENIZERS_PARALLELISM=false
BIN=.venv/bin

# The effective settings (defaults < config file < PAPERCHAT_* environment).
read -r BASE_URL SERVE_PORT TIMEOUT DATA_DIR < <($BIN/python - <<'EOF'
import sys
from core.errors import PaperchatError
from core.settings import load_settings
try:
    s = load_settings()
except PaperchatError as err:
    sys.exit(f"error: {err}")
print(s.llm.base_url, s.llm.serve_port, int(s.llm.serve_startup_timeout_s), s.data_dir)
EOF
)

healthy() {  # exit 0 when an OpenAI-compatible server answers at the base URL $1
  $BIN/python - "$1" <<'EOF'
import sys, httpx
base = sys.argv[1].rstrip("/")
try:
    ok = httpx.get(f"{base}/models", timeout=3.0).status_code in (200, 401)
except httpx.HTTPError:
    ok = False
sys.exit(0 if ok else 1)
EOF
}

# Both children run in the background and the script waits for them, so a signal to the
# script (Ctrl-C, or SIGTERM from a supervisor) is handled at once: the chat and the model
# server this script started are stopped, nothing is left behind.
server_pid="" chat_pid=""
stop() {  # stop pid $1 (if running) with SIGTERM and wait for it
  if [ -n "$1" ] && kill -0 "$1" 2>/dev/null; then
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
  fi
}
cleanup() {
  stop "$chat_pid"
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    echo "Stopping the model server this script started (pid $server_pid)."
    stop "$server_pid"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if healthy "$BASE_URL"; then
  echo "Using the model server at $BASE_URL."
else
  BASE_URL="http://127.0.0.1:$SERVE_PORT/v1"
  LOG="$DATA_DIR/logs/serve-llm.log"
  mkdir -p "$(dirname "$LOG")"
  echo "No model server answers; starting one at $BASE_URL (log: $LOG). This takes a while."
  $BIN/paperchat serve-llm >"$LOG" 2>&1 &
  server_pid=$!
  deadline=$((SECONDS + TIMEOUT))
  until healthy "$BASE_URL"; do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "error: the model server exited before it was ready:"; tail -n 20 "$LOG"; exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "error: the model server was not ready after ${TIMEOUT} s; see $LOG"; exit 1
    fi
    sleep 2
  done
  echo "Model server ready."
fi

$BIN/paperchat --llm-url "$BASE_URL" chat "$@" &
chat_pid=$!
code=0
wait "$chat_pid" || code=$?
chat_pid=""
exit "$code"
