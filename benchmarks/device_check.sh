#!/bin/bash
# The engine's GPU measurements (issue 33), as one call of a lent GPU machine (the `device`
# tool; its image has JAX with CUDA, Flax and Optax but not the simulators). Prepare once
# here, in the repo root, the wheels it cannot download there (Python 3.12 on the machine):
#   pip download --only-binary=:all: --python-version 3.12 --no-deps -d .wheels \
#     --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
#     gymnasium==1.4.0 mujoco==3.17.0 tensorboardX farama-notifications glfw pyopengl
# then call the device tool's run with
#   command="bash benchmarks/device_check.sh", carry=[".wheels"], timeout_s=540
# Files come back from $OUT: gpu.txt, gpu_memory.json, gpu_throughput.json; copy them to
# data/benchmarks/ (as gpu_memory_DEVICE_DATE.json, throughput_DEVICE_DATE.json), list them
# in data/README.md and write the figures into docs/benchmarks.md.
set -euo pipefail
OUT=${OUT:-/tmp/device_check}
mkdir -p "$OUT"
python3 -m pip install --no-index --no-deps -q .wheels/*.whl
export PYTHONPATH=$PWD/src MUJOCO_GL=disable
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc) > "$OUT/gpu.txt"
python3 -c "import jax; print(jax.__version__, jax.devices())" >> "$OUT/gpu.txt"
# how many runs of each preset fit on the GPU (one seed, a 1M-row Hopper-v4 buffer)
timeout 120 python3 benchmarks/gpu_memory.py --json "$OUT/gpu_memory.json" || true
# one seed of paper and fast, both loop modes, two rounds; 1, 8 and 32 seeds of fast
timeout 360 python3 benchmarks/throughput.py --env Hopper-v4 --cells qsm:paper,qsm:fast \
  --rounds 2 --counts 1,8,32 --json "$OUT/gpu_throughput.json"
