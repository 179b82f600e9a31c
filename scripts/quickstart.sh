#!/usr/bin/env bash
# The main job on a fresh machine: fetch MNIST (md5-checked) and train the spherized
# LeNet-5 with the paper's recipe (Adam 1e-3, batch 128, scaling 5, radius 5) for 3 epochs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-data.sh mnist
cargo build --release -p apps
exec target/release/sph train --model sph_lenet --dataset mnist --epochs 3 "$@"
