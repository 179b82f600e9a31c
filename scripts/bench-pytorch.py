#!/usr/bin/env python3
"""PyTorch twin of `sph bench`: times the training step (forward, loss, backward, optimizer)
of the paper's networks on the CPU with the shapes, batch sizes and optimizers `sph bench`
uses, on synthetic data; `--kernels` times torch.mm on the GEMM shapes of `sph bench
--kernels`. Written from the paper's description of the networks (see models/src/ for the
Rust side); not part of CI. Prints text, or one JSON object with --json, in the same fields
as `sph bench --json`.

    target/torch-venv/bin/python scripts/bench-pytorch.py --model lenet --threads 2 --json
"""

import argparse
import json
import math
import statistics
import time

import torch
from torch import nn


class Spherization(nn.Module):
    """n pre-activations -> n+1 coordinates on a sphere of radius r, using only angles:
    phi_i = (pi/2 - phi_L) sigmoid(alpha z_i) + phi_L; s_k = r sin(phi_1)..sin(phi_{k-1}) cos(phi_k),
    s_{n+1} = r sin(phi_1)..sin(phi_n). The running product is a cumulative product (O(n))."""

    def __init__(self, n, scaling=5.0, radius=5.0, delta=1e-6):
        super().__init__()
        self.phi_lower = min(math.asin(delta ** (1.0 / n)), (math.pi / 2) * (1 - 0.01))
        self.scaling = nn.Parameter(torch.tensor(scaling))
        self.register_buffer("radius", torch.tensor(radius))

    def forward(self, z):
        phi = (math.pi / 2 - self.phi_lower) * torch.sigmoid(self.scaling * z) + self.phi_lower
        ones = torch.ones(z.shape[0], 1, dtype=z.dtype)
        prefix = self.radius * torch.cumprod(torch.cat([ones, torch.sin(phi)], dim=1), dim=1)
        return torch.cat([prefix[:, :-1] * torch.cos(phi), prefix[:, -1:]], dim=1)


def head(n, classes, spherized):
    """The last layer: Linear, or spherization followed by a bias-free Linear(n+1 -> classes)."""
    if spherized:
        return nn.Sequential(Spherization(n), nn.Linear(n + 1, classes, bias=False))
    return nn.Sequential(nn.ReLU(), nn.Linear(n, classes))


def simple_fnn(spherized, classes=10):
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 500), nn.ReLU(), nn.Linear(500, 300), head(300, classes, spherized)
    )


def lenet(spherized, classes=10):
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), head(84, classes, spherized),
    )


def conv_bn_relu(c_in, c_out):
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def vgg11_bn(spherized, widths=(64, 128, 256, 512), classes=10):
    layers, c_in = [], 3
    for stage, convs in enumerate([1, 1, 2, 2, 2]):
        for _ in range(convs):
            layers += conv_bn_relu(c_in, widths[min(stage, 3)])
            c_in = widths[min(stage, 3)]
        layers.append(nn.MaxPool2d(2))
    classifier = [nn.Linear(c_in, 4096), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4096, 4096)]
    if spherized:
        classifier.append(head(4096, classes, True))
    else:
        classifier += [nn.ReLU(), nn.Dropout(0.5), nn.Linear(4096, classes)]
    return nn.Sequential(*layers, nn.Flatten(), *classifier)


def cnn9(spherized, multiplier=1.0, classes=10):
    scaled = lambda w: max(1, round(w * multiplier))
    layers, c_in = [], 3
    for width in [scaled(w) for w in (128, 192, 256)]:
        for _ in range(3):
            layers += conv_bn_relu(c_in, width)
            c_in = width
        layers.append(nn.MaxPool2d(2))
    hidden = scaled(256)
    last = head(hidden, classes, True) if spherized else nn.Linear(hidden, classes)
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in * 16, hidden), last)


# (builder, input shape, optimizer) as in `sph bench`, which uses the paper's recipes.
MODELS = {
    "simple_fnn": (lambda a: simple_fnn(False), (1, 28, 28), ("adam", 1e-3, 5e-5)),
    "sph_fnn": (lambda a: simple_fnn(True), (1, 28, 28), ("adam", 1e-3, 5e-5)),
    "lenet": (lambda a: lenet(False), (1, 28, 28), ("adam", 1e-3, 0.0)),
    "sph_lenet": (lambda a: lenet(True), (1, 28, 28), ("adam", 1e-3, 0.0)),
    "vgg11_bn": (lambda a: vgg11_bn(False), (3, 32, 32), ("sgd", 0.05, 5e-4)),
    "sph_vgg11_bn": (lambda a: vgg11_bn(True), (3, 32, 32), ("sgd", 0.05, 5e-4)),
    "cnn9": (lambda a: cnn9(False, a.width_multiplier), (3, 32, 32), ("adam", 1e-3, 5e-4)),
    "sph_cnn9_s": (lambda a: cnn9(True, a.width_multiplier), (3, 32, 32), ("adam", 1e-3, 5e-4)),
}


def optimizer(kind, lr, wd, params):
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd)
    return torch.optim.Adam(params, lr=lr, weight_decay=wd)


def median_min_max(values):
    return statistics.median(values), min(values), max(values)


def bench_model(args):
    build, shape, (kind, lr, wd) = MODELS[args.model]
    torch.manual_seed(0)
    model = build(args)
    model.train()
    opt = optimizer(kind, lr, wd, model.parameters())
    x = torch.rand(args.batch_size, *shape) * 2 - 1
    labels = torch.randint(0, 10, (args.batch_size,))
    loss_fn = nn.CrossEntropyLoss()
    rates = []
    for step in range(args.warmup + args.steps):
        started = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), labels)
        loss.backward()
        opt.step()
        if step >= args.warmup:
            rates.append(args.batch_size / (time.perf_counter() - started))
    median, low, high = median_min_max(rates)
    return {
        "model": args.model,
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "precision": "f32",
        "steps": args.steps,
        "median_images_per_sec": median,
        "min_images_per_sec": low,
        "max_images_per_sec": high,
        "torch": torch.__version__,
    }


def bench_kernels():
    reports = []
    for m, k, n in [(1024, 1024, 1024), (128, 400, 120), (128, 4608, 512), (256, 784, 500)]:
        a, b = torch.rand(m, k) * 2 - 1, torch.rand(k, n) * 2 - 1
        torch.mm(a, b)
        rates = []
        for _ in range(7):
            started = time.perf_counter()
            torch.mm(a, b)
            rates.append(2 * m * n * k / (time.perf_counter() - started) / 1e9)
        reports.append({"kernel": f"sgemm ({m}x{k})@({k}x{n})", "median_gflops": statistics.median(rates)})
    return {"threads": torch.get_num_threads(), "torch": torch.__version__, "kernels": reports}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=sorted(MODELS))
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--width-multiplier", type=float, default=1.0)
    p.add_argument("--kernels", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.kernels:
        report = bench_kernels()
    elif args.model:
        report = bench_model(args)
    else:
        p.error("--model or --kernels is required")
    print(json.dumps(report) if args.json else report)


if __name__ == "__main__":
    main()
