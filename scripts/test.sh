#!/usr/bin/env bash
# The test command: fetch the real data the tests read (verified by md5), then run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x scripts/fetch-data.sh ]; then
    scripts/fetch-data.sh mnist fashion-mnist cifar10
fi
cargo test --workspace --release
