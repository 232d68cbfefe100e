#!/usr/bin/env bash
# The same CPU benchmarks on two Python environments, interleaved A, B, A, B so that both see
# the same machine load; `uptime` before and after. Writes OUT/<bench>_<label>_<round>.json.
#
#   [ROUNDS=2] benchmarks/compare_stacks.sh OUT PYTHON_A LABEL_A PYTHON_B LABEL_B
#
# Run from the repository root (the checkout both interpreters import).
set -euo pipefail
out=$1; py_a=$2; label_a=$3; py_b=$4; label_b=$5
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
lscpu | grep 'Model name' | tee "$out/cpu.txt"
uptime | tee "$out/uptime_before.txt"
for round in $(seq 1 "${ROUNDS:-2}"); do
  for side in a b; do
    if [ $side = a ]; then py=$py_a; label=$label_a; else py=$py_b; label=$label_b; fi
    echo "== round $round, $label: conv_grad" >&2
    "$py" -m benchmarks.conv_grad --batch_size=8 --size=128 --channels=64 --repeats=3 \
      --out="$out/conv_grad_${label}_${round}.json"
    echo "== round $round, $label: resnet18 train step" >&2
    "$py" -m benchmarks.throughput --models=resnet18 --backends=jax --precision=fp32 \
      --batch_size=8 --steps=2 --warmup=0 --input_size=128 \
      --out="$out/resnet18_${label}_${round}.json" >/dev/null
    uptime >&2
  done
done
uptime | tee "$out/uptime_after.txt"
