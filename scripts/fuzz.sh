#!/usr/bin/env bash
# Fuzz every file reader on stable Rust: IDX images, labels and gzip, CIFAR-10, CIFAR-100,
# run checkpoints (safetensors + metadata, as a resume reads them) and run folders'
# config.json + metrics.jsonl (as `sph report` reads them).
#
# Usage: scripts/fuzz.sh [N]   (N inputs per target, default 1,000,000)
#
# Inputs are mutations of real files from the data directory (synthetic ones where a data
# set is missing) and random bytes. Each target runs in its own process and prints
#   TARGET: N inputs, 0 panics, max RSS X MB (...)
# A panic, a peak memory above 512 MB, or a target that hangs (no end within the time
# limit) fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
cargo build --release --quiet -p apps
# Generous: about 200 us per input here; a hang shows as running into this limit.
LIMIT=$(( 60 + N / 1000 ))
status=0
passed=0
failed=0
for target in idx-images idx-labels idx-gzip cifar10 cifar100 checkpoint run-config; do
    if ! timeout "$LIMIT" target/release/sph fuzz "$target" --inputs "$N"; then
        echo "fuzz: $target failed or did not finish within $LIMIT s" >&2
        status=1
        failed=$((failed + 1))
    else
        passed=$((passed + 1))
    fi
done
echo "fuzz: $passed passed, $failed failed"
exit "$status"
