#!/usr/bin/env bash
# The test command: fetch the real data the tests read (verified by md5), put Python's
# safetensors reader into a local venv (one test reads our checkpoints with it; nothing is
# installed globally), then run every test and the engine's examples.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x scripts/fetch-data.sh ]; then
    scripts/fetch-data.sh mnist fashion-mnist cifar10
fi
VENV=target/py-venv
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import safetensors, numpy" 2>/dev/null; then
    if python3 -m venv "$VENV" && "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check safetensors numpy; then
        echo "test.sh: Python's safetensors and numpy installed in $VENV"
    else
        echo "test.sh: warning: could not set up $VENV; the Python reader check will be skipped" >&2
    fi
fi
[ -x "$VENV/bin/python" ] && export SPH_PYTHON="$PWD/$VENV/bin/python"
cargo test --workspace --release
# Data-parallel training under mpirun: needs Open MPI (Debian: openmpi-bin libopenmpi-dev
# libclang-dev; .ci/run installs them). Without it, say so and go on.
if command -v mpirun >/dev/null && command -v mpicc >/dev/null; then
    cargo test --release -p apps --features mpi --test mpi
else
    echo "test.sh: SKIPPED the MPI tests (apps/tests/mpi.rs): no mpirun/mpicc; install openmpi-bin libopenmpi-dev libclang-dev" >&2
fi
# The examples a learner runs first: each must still run and check what it prints.
for example in xor mnist_mlp custom_op spherize_by_hand; do
    echo "example $example:"
    cargo run --release --quiet --example "$example"
done
