#!/usr/bin/env bash
# The one-GPU check of alignkit: <= 8 minutes on one CUDA GPU, no network; needs torch,
# transformers, peft and accelerate (trl + datasets for the TRL comparison). It installs
# alignkit from this tree (pip --no-deps; wheels of missing pure-Python packages are taken from
# shared/wheels/ when that folder exists), then runs scripts/gpu_check.py: DPO tokens/s, peak
# GPU memory and MFU (LoRA, full fine-tuning, TRL's DPOTrainer), FSDP2 on one GPU, one PLE
# iteration, on a random-initialised ~1B Llama-shaped model. It prints one Markdown table
# and writes it to $OUT/gpu_check.md when OUT is set. A failing step is reported FAILED and
# the next one runs; the exit status is 1 when any step failed.
#
#   scripts/gpu_check.sh                                  # on the GPU machine
#   ALIGNKIT_GPU_CHECK_TINY=1 PYTHON=.venv/bin/python scripts/gpu_check.sh --no-install
#                                                         # CPU smoke run, tiny model (~2 min)
# Environment: PYTHON (default python3), OUT, ALIGNKIT_PEAK_TFLOPS (the GPU's dense bf16 peak
# when its name is not in the script's table), ALIGNKIT_GPU_CHECK_TINY=1 (same as --tiny).
# Wheels for the TRL step (pure Python; the GPU image has none of them), fetched where there is
# network into shared/wheels/ (ignored by git; it travels to the GPU machine):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 -d shared/wheels \
#       trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1

install=1
for arg in "$@"; do [[ $arg == --no-install ]] && install=0; done
if [[ $install == 1 ]]; then
  if compgen -G "shared/wheels/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile shared/wheels/*.whl \
      || echo "gpu_check: installing shared/wheels failed; the steps that need them will say so"
  fi
  if ! "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e .; then
    echo "gpu_check: pip install -e . failed; running from src/ instead"
  fi
fi
# src/ first in any case, so this tree's alignkit is the one imported
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" scripts/gpu_check.py "$@"
