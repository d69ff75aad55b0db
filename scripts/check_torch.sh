#!/usr/bin/env bash
# Check the torch a virtualenv got, and on CUDA machines make sure it can use the GPU.
#
#   scripts/check_torch.sh PYTHON cpu|cuda
#
# cuda: this workplace's pip configuration (find-links /opt/wheels) offers a local CPU wheel
# (torch-X+cpu) for the pinned version, and pip prefers it ("X+cpu" sorts above "X"). If
# that is what got installed, the same version is installed again as `torch===X`: exactly X
# (the package index's CUDA build), never X+cpu. Then torch must see a GPU, or this fails
# loudly. Without a GPU (nvidia-smi) it changes nothing and fails; CHECK_TORCH_DRY_RUN=1
# prints the reinstall command instead of running it (and skips that guard).
# cpu: torch must import.
set -euo pipefail
PY=${1:?usage: $0 PYTHON cpu|cuda}
WANT=${2:?usage: $0 PYTHON cpu|cuda}

say() { printf 'check_torch: %s\n' "$*"; }
die() { printf 'check_torch: ERROR: %s\n' "$*" >&2; exit 1; }

describe() {  # "VERSION CUDA_BUILD GPUS": torch's version, its CUDA build (or none), GPUs seen
  "$PY" -c 'import torch; print(torch.__version__, torch.version.cuda or "none", torch.cuda.device_count() if torch.cuda.is_available() else 0)' \
    || die "torch does not import in $PY"
}

read -r version build gpus < <(describe)
say "torch $version in $PY (CUDA build: $build, GPUs usable: $gpus)"
[ "$WANT" = cpu ] && exit 0
[ "$WANT" = cuda ] || die "second argument must be cpu or cuda, not $WANT"
if [ -z "${CHECK_TORCH_DRY_RUN:-}" ] && ! nvidia-smi -L >/dev/null 2>&1; then
  die "nvidia-smi lists no GPU here: not touching $PY's torch (use cpu)"
fi

if [ "$build" = none ] || [[ "$version" == *+cpu ]]; then
  plain=${version%%+*}
  say "torch $version is a CPU build (the local wheel); installing torch $plain from the package index instead"
  # "===X" (PEP 440 arbitrary equality) matches the index's "X" and never the local "X+cpu",
  # and the installed "X+cpu" does not meet it: pip replaces it, with the CUDA libraries
  # (nvidia-*) the index's build depends on.
  cmd=("$PY" -m pip install -q "torch===$plain")
  if [ -n "${CHECK_TORCH_DRY_RUN:-}" ]; then
    printf '%q ' "${cmd[@]}"; echo
    exit 0
  fi
  "${cmd[@]}" || die "reinstalling torch $plain from the package index failed"
  read -r version build gpus < <(describe)
  say "now torch $version (CUDA build: $build, GPUs usable: $gpus)"
fi
if [ "$gpus" -lt 1 ]; then
  die "torch $version (CUDA build: $build) in $PY cannot use the GPU that nvidia-smi lists: \
torch.cuda.is_available() is False. Check the NVIDIA driver against CUDA $build, or install \
a torch built for the driver's CUDA version, then run make setup again."
fi
