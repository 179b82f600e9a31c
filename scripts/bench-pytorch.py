#!/usr/bin/env python3
"""PyTorch twin of `sph bench`: times the training step (forward, loss, backward, optimizer)
of the paper's networks on the CPU with the shapes, batch sizes and optimizers `sph bench`
uses, on synthetic data; `--kernels` times torch.mm on the GEMM shapes of `sph bench
--kernels`, and the spherization op (the official formulation and ours) beside a Linear
layer. Written from the paper's description of the networks (see models/src/ for the
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

from paper_nets import Spherization, build


# (builder, input shape, optimizer) as in `sph bench`, which uses the paper's recipes.
MODELS = {
    "simple_fnn": (lambda a: build("simple_fnn"), (1, 28, 28), ("adam", 1e-3, 5e-5)),
    "sph_fnn": (lambda a: build("sph_fnn"), (1, 28, 28), ("adam", 1e-3, 5e-5)),
    "lenet": (lambda a: build("lenet"), (1, 28, 28), ("adam", 1e-3, 0.0)),
    "sph_lenet": (lambda a: build("sph_lenet"), (1, 28, 28), ("adam", 1e-3, 0.0)),
    "vgg11_bn": (lambda a: build("vgg11_bn"), (3, 32, 32), ("sgd", 0.05, 5e-4)),
    "sph_vgg11_bn": (lambda a: build("sph_vgg11_bn"), (3, 32, 32), ("sgd", 0.05, 5e-4)),
    "cnn9": (lambda a: build("cnn9", width_multiplier=a.width_multiplier), (3, 32, 32), ("adam", 1e-3, 5e-4)),
    "sph_cnn9_s": (lambda a: build("sph_cnn9_s", width_multiplier=a.width_multiplier), (3, 32, 32), ("adam", 1e-3, 5e-4)),
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
    reports += spherize_times()
    return {"threads": torch.get_num_threads(), "torch": torch.__version__, "kernels": reports}


def official_spherization(n, scaling, radius, delta=1e-6, eps=1e-6):
    """The official code's formulation, as the paper's slides describe it: the n angles and
    a last angle of 0 (whose cosine is 1), then s = r exp(log(|sin| + eps) U + log(|cos| + eps) I)
    with U the (n+1) x (n+1) strictly upper-triangular matrix of ones (prefix sums of log
    sines) and I the identity: two (n+1) x (n+1) matrix products per row."""
    phi_lower = min(math.asin(delta ** (1.0 / n)), (math.pi / 2) * (1 - 0.01))
    upper = torch.triu(torch.ones(n + 1, n + 1), diagonal=1)
    identity = torch.eye(n + 1)
    alpha = torch.tensor(float(scaling), requires_grad=True)

    def forward(z):
        phi = (math.pi / 2 - phi_lower) * torch.sigmoid(alpha * z) + phi_lower
        theta = torch.cat([phi, torch.zeros(z.shape[0], 1)], dim=1)
        v = torch.log(torch.abs(torch.sin(theta)) + eps) @ upper + torch.log(torch.abs(torch.cos(theta)) + eps) @ identity
        return radius * torch.exp(v)

    return forward


def time_us(step, repeats=51):
    step()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append((time.perf_counter() - started) * 1e6)
    return statistics.median(times)


def spherize_times():
    """Forward + backward (sum of the outputs) at the SimpleFNN head's shape [256, 300]: the
    official formulation, the cumulative-product one of paper_nets.py, and Linear(300 -> 10)."""
    rows, n = 256, 300
    z = (torch.rand(rows, n) * 2 - 1).requires_grad_()
    official = official_spherization(n, 5.0, 5.0)
    cumprod = Spherization(n)
    linear = nn.Linear(n, 10)
    reports = []
    for name, op in [
        (f"spherize fwd+bwd [{rows}, {n}], official formulation", official),
        (f"spherize fwd+bwd [{rows}, {n}], cumulative product", cumprod),
        (f"Linear {n}->10 fwd+bwd [{rows}, {n}]", linear),
    ]:
        reports.append({"kernel": name, "median_us": time_us(lambda: op(z).sum().backward())})
    return reports


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
    # Subnormals read and made as zero, as sph does (engine/src/kernels/subnormal.rs).
    torch.set_flush_denormal(True)
    if args.kernels:
        report = bench_kernels()
    elif args.model:
        report = bench_model(args)
    else:
        p.error("--model or --kernels is required")
    print(json.dumps(report) if args.json else report)


if __name__ == "__main__":
    main()
