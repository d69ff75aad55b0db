#!/usr/bin/env bash
# The benchmarks: scripts/run_benchmarks.sh small|full
#   small: CI size (a few minutes on 2 cores), results in benchmarks/results/small/
#   full:  `make bench`, whole corpus and 1e4..1e6 synthetic vectors, results in benchmarks/results/
# Called by `make bench`, `make bench-small` and at the end of scripts/run_tests.sh.
# The answer benchmark uses PAPERCHAT_TEST_LLM_URL; without it, `small` skips it and `full`
# starts a model server (`paperchat serve-llm`) for the run.
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-small}
case "$size" in
  small) out=benchmarks/results/small ;;
  full) out=benchmarks/results ;;
  *) echo "usage: $0 small|full" >&2; exit 2 ;;
esac
export TOKENIZERS_PARALLELISM=false GRADIO_ANALYTICS_ENABLED=False
BIN=.venv/bin
work=$(mktemp -d)
server_pid=""
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
cleanup() {
  stop_server
  rm -rf "$work"
}
trap cleanup EXIT

start_server() {
  local port log=$work/serve-llm.log
  port=$($BIN/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  echo "== starting the model server on 127.0.0.1:$port (log: $log)"
  setsid env PAPERCHAT_LLM_SERVE_PORT="$port" PAPERCHAT_LLM_BASE_URL="http://127.0.0.1:$port/v1" \
    $BIN/paperchat serve-llm >"$log" 2>&1 &
  server_pid=$!
  export PAPERCHAT_TEST_LLM_URL="http://127.0.0.1:$port/v1"
  for _ in $(seq 1 300); do
    curl -sf "$PAPERCHAT_TEST_LLM_URL/models" >/dev/null && return 0
    kill -0 "$server_pid" 2>/dev/null || { echo "the model server exited:"; tail -n 40 "$log"; exit 1; }
    sleep 2
  done
  echo "model server not ready"; tail -n 40 "$log"; exit 1
}

echo "== benchmark: ingest ($size; load average: $(cut -d' ' -f1-3 /proc/loadavg))"
$BIN/python -m benchmarks.bench_ingest --size "$size" --out "$out" --keep-library "$work/library"
echo
echo "== benchmark: query ($size)"
$BIN/python -m benchmarks.bench_query --size "$size" --out "$out" --library "$work/library"
echo
echo "== benchmark: answer ($size)"
if [ "$size" = full ] && [ -z "${PAPERCHAT_TEST_LLM_URL:-}" ]; then
  start_server
fi
$BIN/python -m benchmarks.bench_answer --size "$size" --out "$out" --library "$work/library"
echo
echo "== benchmark: rewrite ($size)"
$BIN/python -m benchmarks.bench_rewrite --size "$size" --out "$out" --library "$work/library"
echo
echo "== benchmark: pages ($size)"
$BIN/python -m benchmarks.bench_pages --size "$size" --out "$out" --library "$work/library"
