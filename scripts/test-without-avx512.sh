#!/usr/bin/env bash
# The engine's and the models' tests on a CPU without AVX-512, emulated by qemu-user (its x86
# emulator has AVX2 but no AVX-512), so that a kernel or test reaching AVX-512 code without
# checking the CPU fails here with SIGILL instead of on the next AVX2-only machine. The tests are built
# for x86-64-v3 (AVX2/FMA) into their own target directory: `target-cpu=native` on an
# AVX-512 host would let the compiler use AVX-512 everywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(uname -m)" != x86_64 ]; then
    echo "test-without-avx512.sh: SKIPPED: not an x86_64 host" >&2
    exit 0
fi
if ! command -v qemu-x86_64 >/dev/null; then
    echo "test-without-avx512.sh: qemu-x86_64 not found; install Debian's qemu-user" >&2
    exit 1
fi
TARGET=target/x86-64-v3
# One line per test binary: the crate's directory (where cargo test runs it) and the binary.
tests=$(RUSTFLAGS="-C target-cpu=x86-64-v3" CARGO_TARGET_DIR="$TARGET" \
    cargo test --release -p engine -p models --no-run --message-format=json |
    python3 -c '
import json, os, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"] and m["target"]["name"] != "gradcheck":
        print(os.path.dirname(m["manifest_path"]) + "\t" + m["executable"])')
[ -n "$tests" ] || { echo "test-without-avx512.sh: no test binaries were built" >&2; exit 1; }
# gradcheck is left out: its finite differences take minutes under emulation and go through
# the same kernels as the tests that run.
while IFS=$'\t' read -r dir binary; do
    echo "without AVX-512: $(basename "$binary")"
    # qemu warns, once per thread, of CPUID bits of the model it does not emulate.
    (cd "$dir" && qemu-x86_64 -cpu Haswell-v4 "$binary" --test-threads 2 -q 2>&1 |
        { grep -v "TCG doesn't support requested feature" || true; })
done <<< "$tests"
