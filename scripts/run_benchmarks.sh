#!/usr/bin/env bash
# The benchmarks: scripts/run_benchmarks.sh small|full
#   small: CI size (a few minutes on 2 cores), results in benchmarks/results/small/
#   full:  `make bench`, whole corpus and 1e4..1e6 synthetic vectors, results in benchmarks/results/
# Called by `make bench`, `make bench-small` and at the end of scripts/run_tests.sh.
# The answer benchmark uses PAPERCHAT_TEST_LLM_URL; without it, `small` skips it and `full`
# starts a model server (`paperchat serve-llm --port 0`) for the run. `full` also measures
# the first token on bf16 and fp32 servers it starts itself (bench_answer --first-token).
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
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
cleanup() {
  stop_llm
  rm -rf "$work"
}
trap cleanup EXIT

echo "== benchmark: ingest ($size; load average: $(cut -d' ' -f1-3 /proc/loadavg))"
$BIN/python -m benchmarks.bench_ingest --size "$size" --out "$out" --keep-library "$work/library"
echo
echo "== benchmark: query ($size)"
$BIN/python -m benchmarks.bench_query --size "$size" --out "$out" --library "$work/library"
echo
echo "== benchmark: index ($size)"
$BIN/python -m benchmarks.bench_index --size "$size" --out "$out"
echo
echo "== benchmark: onnx embedding ($size)"
onnx_size=$size; [ "$size" = small ] && onnx_size=tiny  # tiny: one paper, one round (CI)
$BIN/python -m benchmarks.bench_onnx --size "$onnx_size" --out "$out"
echo
echo "== benchmark: answer ($size)"
first_token=()
if [ "$size" = full ]; then
  first_token=(--first-token)  # bf16 and fp32 servers of its own, before and after prompts
  if [ -z "${PAPERCHAT_TEST_LLM_URL:-}" ]; then
    echo "== starting the model server (paperchat serve-llm --port 0; log: $work/serve-llm.log)"
    start_llm "$work/serve-llm.log" --port 0
    export PAPERCHAT_TEST_LLM_URL=$LLM_URL
  fi
fi
$BIN/python -m benchmarks.bench_answer --size "$size" --out "$out" --library "$work/library" \
  "${first_token[@]}"
echo
echo "== benchmark: rewrite ($size)"
$BIN/python -m benchmarks.bench_rewrite --size "$size" --out "$out" --library "$work/library"
echo
echo "== benchmark: pages ($size)"
$BIN/python -m benchmarks.bench_pages --size "$size" --out "$out" --library "$work/library"
if [ "$size" = full ]; then  # 10 answers per variant and mode: minutes of model time
  echo
  echo "== benchmark: injection (full)"
  $BIN/python -m benchmarks.bench_injection --size full --out "$out" \
    --llm-url "$PAPERCHAT_TEST_LLM_URL"
fi
