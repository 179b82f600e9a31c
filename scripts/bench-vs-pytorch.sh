#!/usr/bin/env bash
# spherize against PyTorch on this machine, side by side: the same networks, shapes, batch
# sizes and optimizers (`sph bench` and scripts/bench-pytorch.py), run one after the other
# in interleaved rounds, then one table of medians and ratios. Not part of CI.
#
# Usage: scripts/bench-vs-pytorch.sh [--install] [--rounds N] [--threads T]
#   --install   create target/torch-venv and pip-install torch into it first
#   --rounds N  interleaved rounds per workload (default 3); each round times 20 steps
#   --threads T threads for both (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=3
THREADS=2
INSTALL=0
while [ $# -gt 0 ]; do
    case "$1" in
        --install) INSTALL=1 ;;
        --rounds) ROUNDS="$2"; shift ;;
        --threads) THREADS="$2"; shift ;;
        *) echo "bench-vs-pytorch: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
VENV=target/torch-venv
if [ "$INSTALL" = 1 ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check torch numpy
fi
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    echo "bench-vs-pytorch: no torch in $VENV; run with --install" >&2
    exit 2
fi
cargo build --release --quiet -p apps
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

# name | sph bench flags | bench-pytorch.py flags
WORKLOADS=(
    "VGG-11-BN, batch 128|--model vgg11_bn --batch-size 128|--model vgg11_bn --batch-size 128"
    "CNN-9 x0.25, batch 128|--model cnn9 --width-multiplier 0.25 --batch-size 128|--model cnn9 --width-multiplier 0.25 --batch-size 128"
    "SimpleFNN, batch 256|--model simple_fnn --batch-size 256|--model simple_fnn --batch-size 256"
    "spherized SimpleFNN, batch 256|--model sph_fnn --batch-size 256|--model sph_fnn --batch-size 256"
    "LeNet-5, batch 128|--model lenet --batch-size 128|--model lenet --batch-size 128"
    "spherized LeNet-5, batch 128|--model sph_lenet --batch-size 128|--model sph_lenet --batch-size 128"
)
for round in $(seq "$ROUNDS"); do
    for i in "${!WORKLOADS[@]}"; do
        IFS='|' read -r _ ours theirs <<<"${WORKLOADS[$i]}"
        # shellcheck disable=SC2086
        target/release/sph bench $ours --threads "$THREADS" --json >>"$OUT/ours-$i.jsonl"
        # shellcheck disable=SC2086
        "$VENV/bin/python" scripts/bench-pytorch.py $theirs --threads "$THREADS" --json >>"$OUT/torch-$i.jsonl"
    done
    target/release/sph bench --kernels --threads "$THREADS" --json >>"$OUT/ours-kernels.jsonl"
    "$VENV/bin/python" scripts/bench-pytorch.py --kernels --threads "$THREADS" --json >>"$OUT/torch-kernels.jsonl"
done

NAMES="$(printf '%s\n' "${WORKLOADS[@]}" | cut -d'|' -f1)"
"$VENV/bin/python" - "$OUT" "$ROUNDS" "$THREADS" "$NAMES" <<'EOF'
import json, platform, statistics, sys
out, rounds, threads, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split("\n")
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
read = lambda f: [json.loads(l) for l in open(f"{out}/{f}")]
print(f"Medians of {rounds} interleaved rounds (each round: median of 20 timed steps), {threads} threads, {cpu}")
print()
print("| workload | PyTorch | spherize | ratio |")
print("| --- | --- | --- | --- |")
for i, name in enumerate(names):
    ours = statistics.median(r["median_images_per_sec"] for r in read(f"ours-{i}.jsonl"))
    theirs = statistics.median(r["median_images_per_sec"] for r in read(f"torch-{i}.jsonl"))
    print(f"| {name} (img/s) | {theirs:,.0f} | {ours:,.0f} | {ours / theirs:.2f}x |")
ours_k, theirs_k = read("ours-kernels.jsonl"), read("torch-kernels.jsonl")
def median_of(reports, name, field):
    return statistics.median(next(x[field] for x in r["kernels"] if x["kernel"] == name) for r in reports)
for k in theirs_k[0]["kernels"]:
    if "median_gflops" in k:
        theirs, ours = median_of(theirs_k, k["kernel"], "median_gflops"), median_of(ours_k, k["kernel"], "median_gflops")
        print(f"| {k['kernel']} (GFLOP/s) | {theirs:,.1f} | {ours:,.1f} | {ours / theirs:.2f}x |")
print()
# The spherization op: ours against PyTorch's formulations and a Linear layer of the same input.
ours_sph = next(x["kernel"] for x in ours_k[0]["kernels"] if x["kernel"].startswith("spherize"))
ours_us = median_of(ours_k, ours_sph, "median_us")
print(f"| {ours_sph} | PyTorch (us) | spherize (us) | PyTorch / spherize |")
print("| --- | --- | --- | --- |")
for k in theirs_k[0]["kernels"]:
    if "median_us" in k:
        theirs = median_of(theirs_k, k["kernel"], "median_us")
        print(f"| PyTorch: {k['kernel']} | {theirs:,.0f} | {ours_us:,.0f} | {theirs / ours_us:.1f}x |")
print()
peak_name = next(x["kernel"] for x in ours_k[0]["kernels"] if x["kernel"].startswith("FMA peak"))
print(f"f32 FMA ceiling ({peak_name}, sph bench --kernels): {median_of(ours_k, peak_name, 'median_gflops'):,.0f} GFLOP/s")
print(f"PyTorch {read('torch-0.jsonl')[0]['torch']}; spherize CPU features: {' '.join(read('ours-0.jsonl')[0]['cpu_features'])}")
EOF
