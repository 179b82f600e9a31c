#!/usr/bin/env python3
"""PyTorch twin of `sph reproduce`: trains the runs of a plan that `sph reproduce TABLE
--budget B` wrote (`OUT/TABLE/B/plan.json`) with the same networks (scripts/paper_nets.py),
initialisation scheme, data files, subsets (the index files beside the plan), augmentation,
optimizer, schedule (1-based epochs, as the paper's scripts count) and budget, and writes
`pytorch.csv` beside the plan; `sph reproduce` then shows PyTorch's numbers next to ours.
Finished runs are skipped. Written from the paper and our docs; not part of CI.

    target/torch-venv/bin/python scripts/reproduce-pytorch.py runs/reproduce/table1/cpu --threads 2
"""

import argparse
import csv
import json
import os
from pathlib import Path

import torch

from paper_train import train_run

def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("plan_dir", type=Path, help="OUT/TABLE/BUDGET of a `sph reproduce` run (holds plan.json)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--data", type=Path, default=None, help="data directory (default: the plan's)")
    p.add_argument("--only-dataset", default=None, help="train only the runs of this table's rows (e.g. cifar10)")
    p.add_argument("--until", type=int, default=None, help="train only the plan's first N runs (to catch up with a partial `sph reproduce`)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    # Subnormals read and made as zero, as sph does (engine/src/kernels/subnormal.rs).
    torch.set_flush_denormal(True)
    plan = json.loads((args.plan_dir / "plan.json").read_text())
    data_dir = args.data or Path(os.environ.get("SPH_DATA", plan["data_dir"]))
    out = args.plan_dir / "pytorch.csv"
    done = set()
    if out.exists():
        with open(out) as f:
            done = {(r["model"], r["dataset"], r["paper_dataset"], r["width"], r["seed"]) for r in csv.DictReader(f)}
    for i, entry in enumerate(plan["runs"]):
        s = entry["settings"]
        width = "" if s.get("width") is None else "[" + "/".join(map(str, s["width"])) + "]"
        key = (s["model"], s["dataset"], entry["paper_dataset"], width, str(s["seed"]))
        if args.until is not None and i >= args.until:
            break
        if key in done or args.only_dataset not in (None, entry["paper_dataset"]):
            continue
        print(f"[{i + 1}/{len(plan['runs'])}] {s['model']} seed {s['seed']} on {s['dataset']}", flush=True)
        train_acc, test_acc, seconds, _ = train_run(entry, args.plan_dir, data_dir)
        new = not out.exists()
        with open(out, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["model", "dataset", "paper_dataset", "width", "seed", "train_acc", "test_acc", "seconds"])
            w.writerow([*key, f"{train_acc:.4f}", f"{test_acc:.4f}", f"{seconds:.1f}"])
    print(f"wrote {out}; run `sph reproduce` again to put it in the table")


if __name__ == "__main__":
    main()
