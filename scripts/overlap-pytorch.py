#!/usr/bin/env python3
"""PyTorch twin of `sph analyze overlap` (and of `sph reproduce dispersion`) for CNN-9 with any
of its last-layer operators (plain, the six angle-based projections, spherization): trains each
run that the analysis trained in OUT (the settings from OUT/OPERATOR-sSEED/config.json, the
images from the listings in OUT/subsets/), takes the test representations (the input of the
last layer), keeps only their angles and counts, at tau/10, tau and 10 tau, the test samples
with another within tau (overlapped), those of them misclassified (errors) and the overlapping
pairs with different labels (conflicts), with exact angles in float64, as the analysis does;
for the spherized network also the learned scaling and the share of saturated angles (float32
sigmoid(alpha z) rounding to 1, or the angle to phi_L). Appends one line per tau to
OUT/pytorch-overlap.csv after each run; runs already there are skipped, so an interrupted
twin resumes. Written from the paper and our docs; not part of CI.

    target/torch-venv/bin/python scripts/overlap-pytorch.py runs/reproduce/dispersion/cpu --threads 2
"""

import argparse
import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from paper_data import load, prepare
from paper_nets import AngularLinear, Spherization
from paper_train import normalize, subset, train_run

HEADER = ["operator", "model", "seed", "train_acc", "test_acc", "test_samples", "dims", "tau", "overlapped", "errors",
          "conflicts", "seconds", "scaling", "saturated_fraction"]


def representations(model, x, y):
    """(representations [N, d] float64, head inputs z or None, predictions, the Spherization
    module or None) of the test images, in evaluation mode."""
    last = [m for m in model.modules() if isinstance(m, (nn.Linear, AngularLinear))][-1]
    sph = next((m for m in model.modules() if isinstance(m, Spherization)), None)
    seen = {"repr": [], "z": []}
    hooks = [last.register_forward_hook(lambda m, inp, out: seen["repr"].append(inp[0].detach()))]
    if sph is not None:
        hooks.append(sph.register_forward_hook(lambda m, inp, out: seen["z"].append(inp[0].detach())))
    model.eval()
    preds = []
    with torch.no_grad():
        for i in range(0, len(x), 500):
            preds.append(model(normalize(x[i: i + 500], "cifar10")).argmax(1))
    for h in hooks:
        h.remove()
    z = torch.cat(seen["z"]) if seen["z"] else None
    return torch.cat(seen["repr"]).double().numpy(), z, torch.cat(preds).numpy(), sph


def close_pairs(reprs, max_tau):
    """All pairs (i < j) whose angle is below max_tau, as arrays (i, j, angle), with the exact
    angle 2 asin(|u_i - u_j| / 2); the cosines of blocks of rows only pick the candidates."""
    norms = np.linalg.norm(reprs, axis=1, keepdims=True)
    unit = np.divide(reprs, norms, out=np.zeros_like(reprs), where=norms > 0)
    threshold = math.cos(max_tau) - 1e-9
    found = [], [], []
    for start in range(0, len(unit), 1000):
        rows, cols = np.nonzero(unit[start: start + 1000] @ unit.T > threshold)
        rows += start
        keep = rows < cols
        rows, cols = rows[keep], cols[keep]
        for a in range(0, len(rows), 1 << 20):
            i, j = rows[a: a + (1 << 20)], cols[a: a + (1 << 20)]
            angle = 2 * np.arcsin(np.minimum(1.0, np.linalg.norm(unit[i] - unit[j], axis=1) / 2))
            close = angle < max_tau
            for acc, part in zip(found, (i[close], j[close], angle[close])):
                acc.append(part)
    return tuple(np.concatenate(f) if f else np.zeros(0) for f in found)


def counts(pairs, tau, labels, preds):
    i, j, angle = pairs
    close = angle < tau
    i, j = i[close].astype(np.int64), j[close].astype(np.int64)
    overlapped = np.unique(np.concatenate([i, j]))
    errors = int((preds[overlapped] != labels[overlapped]).sum())
    conflicts = int((labels[i] != labels[j]).sum())
    return len(overlapped), errors, conflicts


def saturated_fraction(sph, z):
    """Share of angles that float32 pins: sigmoid(alpha z) rounds to 1, or the angle to phi_L."""
    sig = torch.sigmoid(sph.scaling.detach().float() * z.float())
    phi = (math.pi / 2 - sph.phi_lower) * sig + sph.phi_lower
    return ((sig == 1.0) | (phi == torch.tensor(sph.phi_lower, dtype=torch.float32))).double().mean().item()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path, help="the --out folder of a `sph analyze overlap` run")
    p.add_argument("--operators", default=None, help="comma-separated (default: every operator the analysis ran)")
    p.add_argument("--seeds", default="0")
    p.add_argument("--tau", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--data", type=Path, default=None, help="data directory (default: $SPH_DATA or data/)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    # Subnormals read and made as zero, as sph does (engine/src/kernels/subnormal.rs).
    torch.set_flush_denormal(True)
    data_dir = args.data or Path(os.environ.get("SPH_DATA", "data"))
    taus = [args.tau / 10, args.tau, args.tau * 10]
    with open(args.out / "overlap.csv") as f:
        analyzed_rows = list(csv.DictReader(f))
    operators = args.operators.split(",") if args.operators else list(dict.fromkeys(r["operator"] for r in analyzed_rows))
    out = args.out / "pytorch-overlap.csv"
    done = set()
    if out.exists():
        with open(out) as f:
            done = {(r["operator"], r["seed"]) for r in csv.DictReader(f)}
    for op in operators:
        for seed in args.seeds.split(","):
            if (op, seed) in done:
                print(f"{op} seed {seed}: already in {out}", flush=True)
                continue
            config_path = args.out / f"{op}-s{seed}" / "config.json"
            if not config_path.exists():
                p.error(f"{config_path}: not found; run the analysis of operator '{op}' seed {seed} first")
            s = json.loads(config_path.read_text())["settings"]
            # The analysis's test subset is not a training setting: take its size from its table.
            analyzed = next((r for r in analyzed_rows if r["operator"] == op and r["seed"] == seed), None)
            if analyzed is None:
                p.error(f"{args.out / 'overlap.csv'}: no line for operator '{op}' seed {seed}")
            test_limit = None if int(analyzed["test_samples"]) >= 10000 else int(analyzed["test_samples"])
            listing = lambda split, n: None if n is None else f"subsets/cifar10-{split}-{n}.txt"
            entry = {"settings": s, "train_subset": listing("train", s["train_limit"]), "test_subset": None}
            print(f"{op} seed {seed}: {s['epochs']} epochs", flush=True)
            train_acc, test_acc, seconds, model = train_run(entry, args.out, data_dir)
            test_x, test_y = load(data_dir, "cifar10", "test")
            test_x, test_y = subset(test_x, test_y, args.out, listing("test", test_limit))
            reprs, z, preds, sph = representations(model, prepare(test_x, "cifar10", 32), test_y)
            pairs = close_pairs(reprs, taus[2])
            scaling = "" if sph is None else f"{sph.scaling.item():.4f}"
            saturation = "" if sph is None else f"{saturated_fraction(sph, z):.4f}"
            rows = []
            for tau in taus:
                overlapped, errors, conflicts = counts(pairs, tau, test_y, preds)
                rows.append([op, s["model"], seed, f"{train_acc:.2f}", f"{test_acc:.2f}", len(test_y), reprs.shape[1],
                             f"{tau:e}", overlapped, errors, conflicts, f"{seconds:.0f}", scaling, saturation])
            print(f"  test {test_acc:.2f}%: #ovlp {rows[1][8]} #err {rows[1][9]} #conflict {rows[1][10]} at tau {args.tau:e}", flush=True)
            new = not out.exists()
            with open(out, "a", newline="") as f:
                w = csv.writer(f)
                if new:
                    w.writerow(HEADER)
                w.writerows(rows)
    print(f"wrote {out}; run the analysis again (`sph analyze overlap` with the same flags, or `sph reproduce dispersion`) to put it beside ours in overlap.txt")


if __name__ == "__main__":
    main()
