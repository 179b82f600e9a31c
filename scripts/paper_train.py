"""Training for the PyTorch twins (`reproduce-pytorch.py`, `overlap-pytorch.py`): one run of
`sph train`'s settings on the same binary data files and subsets, with the same augmentation,
normalisation, optimizer and schedule (1-based epochs, as the paper's scripts count)."""

import time

import numpy as np
import torch
import torch.nn.functional as F

from paper_data import load, prepare
from paper_nets import build

# Normalisation (mean, std) and augmentation per data set, as datasets::paper_normalize/paper_augment.
NORMALIZE = {
    "mnist": ([0.0], [1.0]),
    "fashion-mnist": ([0.286], [0.353]),
    "cifar10": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
}
AUGMENT = {"mnist": None, "fashion-mnist": "crop-flip", "cifar10": "crop-flip"}


def subset(images, labels, plan_dir, listing):
    if listing is None:
        return images, labels
    idx = np.loadtxt(plan_dir / listing, dtype=np.int64, ndmin=1)
    return images[idx], labels[idx]


def augment(x, kind, gen):
    """Random crop of the original size from a 4-pixel zero-padded image, and a horizontal flip."""
    if kind is None:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (4, 4, 4, 4))
    dy = torch.randint(0, 9, (n,), generator=gen)
    dx = torch.randint(0, 9, (n,), generator=gen)
    out = torch.stack([padded[i, :, dy[i]: dy[i] + h, dx[i]: dx[i] + w] for i in range(n)])
    flip = torch.rand(n, generator=gen) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def normalize(x, dataset):
    mean, std = NORMALIZE[dataset]
    return (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


def lr_at(schedule, base, epoch):
    """The rate during 0-based `epoch`, counting milestones as the paper's scripts (1-based)."""
    parts = schedule.split(":")
    number = epoch + 1
    if parts[0] == "step":
        return base * float(parts[2]) ** (number // int(parts[1]))
    if parts[0] == "multistep":
        return base * float(parts[2]) ** sum(int(m) <= number for m in parts[1].split(","))
    return base


def evaluate(model, x, y, dataset):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), 500):
            correct += (model(normalize(x[i: i + 500], dataset)).argmax(1) == y[i: i + 500]).sum().item()
    return 100.0 * correct / max(1, len(x))


def train_run(entry, plan_dir, data_dir):
    """Trains the run `entry` (its `settings` and the subset listings, relative to `plan_dir`);
    returns (train accuracy %, test accuracy %, seconds, the model)."""
    s = entry["settings"]
    dataset = s["dataset"]
    torch.manual_seed(s["seed"])
    gen = torch.Generator().manual_seed(s["seed"] + 1)
    sphere = {"scaling": s["scaling"], "radius": s["radius"], "delta": s["delta"]}
    model = build(s["model"], 10, s.get("width"), s["width_multiplier"], sphere)
    size = 28 if s["model"].endswith(("fnn", "lenet")) else 32
    train_x, train_y = subset(*load(data_dir, dataset, "train"), plan_dir, entry["train_subset"])
    test_x, test_y = subset(*load(data_dir, dataset, "test"), plan_dir, entry["test_subset"])
    train_x, test_x = prepare(train_x, dataset, size), prepare(test_x, dataset, size)
    train_y, test_y = torch.from_numpy(train_y), torch.from_numpy(test_y)
    if s["optimizer"] == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=s["lr"], momentum=s["momentum"], weight_decay=s["weight_decay"], nesterov=s["nesterov"])
    else:
        opt = torch.optim.Adam(model.parameters(), lr=s["lr"], weight_decay=s["weight_decay"])
    kind = AUGMENT[dataset] if s["augment"] else None
    started = time.time()
    for epoch in range(s["epochs"]):
        for group in opt.param_groups:
            group["lr"] = lr_at(s["schedule"], s["lr"], epoch)
        model.train()
        order = torch.randperm(len(train_x), generator=gen)
        correct = 0
        for i in range(0, len(order), s["batch_size"]):
            batch = order[i: i + s["batch_size"]]
            x = normalize(augment(train_x[batch], kind, gen), dataset)
            logits = model(x)
            loss = F.cross_entropy(logits, train_y[batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            correct += (logits.argmax(1) == train_y[batch]).sum().item()
        train_acc = 100.0 * correct / len(order)
        test_acc = evaluate(model, test_x, test_y, dataset)
        print(f"  {s['model']} seed {s['seed']} epoch {epoch + 1}/{s['epochs']}: train {train_acc:.2f}% test {test_acc:.2f}%", flush=True)
    return train_acc, test_acc, time.time() - started, model
