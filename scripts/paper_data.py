"""The data sets' original binary files (IDX for MNIST and Fashion-MNIST, CIFAR-10's record
batches) as tensors, for the PyTorch twins `reproduce-pytorch.py` and
`vis-collapse-pytorch.py`; the same files `sph` reads."""

import gzip
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

FOLDERS = {"mnist": "mnist", "fashion-mnist": "fashion-mnist", "cifar10": "cifar-10-batches-bin"}


def read_idx(path):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def find(folder, stem):
    for name in (stem, stem + ".gz"):
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"{folder / stem} (or .gz) not found: run scripts/fetch-data.sh")


def load(data_dir, dataset, split):
    """(images uint8 [N, C, H, W], labels int64 [N]) from the original binary files."""
    folder = Path(data_dir) / FOLDERS[dataset]
    if dataset == "cifar10":
        names = [f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"]
        raw = np.concatenate([np.fromfile(folder / n, dtype=np.uint8).reshape(-1, 3073) for n in names])
        return raw[:, 1:].reshape(-1, 3, 32, 32), raw[:, 0].astype(np.int64)
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(find(folder, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(find(folder, f"{prefix}-labels-idx1-ubyte"))
    return images[:, None, :, :], labels.astype(np.int64)


def prepare(images, dataset, size):
    """uint8 -> float in [0, 1], resized to the model's input (F-MNIST 28 -> 32, bilinear)."""
    x = torch.from_numpy(images.astype(np.float32) / 255.0)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x
