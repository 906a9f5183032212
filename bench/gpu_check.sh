#!/usr/bin/env bash
# One lent-GPU call (the `device` tool): LoRA vs full fine-tuning on CUDA at two model sizes, then the fine-tuning and
# speculative-decoding tests on CUDA. Runs under the GPU image's own python3 (torch/transformers there); wheels that
# image lacks (pydantic, peft) travel in .whl/ (see bench/README or the device notes). Results land in $OUT.
set -u
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" PYTHONUNBUFFERED=1 TOKENWISE_LOG_LEVEL=WARNING
nvidia-smi -L | tee "$OUT/nvidia.txt"
python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)" | tee -a "$OUT/nvidia.txt"
# the CPU bench's model (27M) and a 218M one at a realistic sequence length
timeout 100 python3 bench/finetune.py --steps 20 --seq-len 512 --batch 8 --out "$OUT/finetune_cuda_small.json"
timeout 150 python3 bench/finetune.py --hidden 1024 --layers 16 --steps 20 --seq-len 1024 --batch 8 \
  --out "$OUT/finetune_cuda.json"
timeout 160 python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/test_lora.py tests/test_pretrain.py \
  tests/test_adapt_tokenizer.py tests/test_bpb.py tests/test_speculative.py tests/test_finetune_data.py 2>&1 | tee "$OUT/pytest_cuda.txt" | tail -40
