#!/usr/bin/env bash
# `make chat` after setup and ingest: use the model server at llm.base_url if one answers,
# else start one (`paperchat serve-llm --reuse` decides and waits until it is healthy); then
# open the chat (`paperchat chat`, arguments passed on). A server started here is stopped
# when the chat ends (Ctrl-C, error or normal exit).
set -euo pipefail
cd "$(dirname "$0")/.."
export GRADIO_ANALYTICS_ENABLED=False TOKENIZERS_PARALLELISM=false
BIN=.venv/bin

# The effective data dir (defaults < config file < PAPERCHAT_* environment); a bad setting
# stops here with its one-line error.
DATA_DIR=$($BIN/paperchat config | $BIN/python -c 'import json, sys; print(json.load(sys.stdin)["paths"]["data_dir"])')
LOG="$DATA_DIR/logs/serve-llm.log"
mkdir -p "$(dirname "$LOG")"

# Both children run in the background and the script waits for them, so a signal to the
# script (Ctrl-C, or SIGTERM from a supervisor) is handled at once: the chat and the model
# server this script started are stopped, nothing is left behind.
chat_pid=""
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
cleanup() {
  if [ -n "$chat_pid" ] && kill -0 "$chat_pid" 2>/dev/null; then
    kill -TERM "$chat_pid" 2>/dev/null || true
    wait "$chat_pid" 2>/dev/null || true
  fi
  if [ -n "$llm_pid" ] && kill -0 "$llm_pid" 2>/dev/null; then
    echo "Stopping the model server this script started (pid $llm_pid)."
  fi
  stop_llm
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "Looking for the model server; starting one if none answers (log: $LOG). This can take a while."
start_llm "$LOG" --reuse
grep -m1 -E '^(Serving|Using) ' "$LOG" || true

$BIN/paperchat --llm-url "$LLM_URL" chat "$@" &
chat_pid=$!
code=0
wait "$chat_pid" || code=$?
chat_pid=""
exit "$code"
