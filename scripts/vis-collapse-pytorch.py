#!/usr/bin/env python3
"""Figure 5's question in PyTorch: do the plain visualization CNNs (a 2- or 3-unit ReLU feature
layer, scripts/paper_nets.py `vis_cnn`) collapse when trained as the paper says (MNIST, Adam
lr 1e-3, batch 128), as ours do? Prints, per model and seed, the test accuracy after each epoch
and how many feature units are zero on every test image ("dead"). Not part of CI.

    target/torch-venv/bin/python scripts/vis-collapse-pytorch.py --epochs 1 --seeds 3 --threads 2
"""

import argparse
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from paper_data import load, prepare
from paper_nets import build, vis_cnn


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--data", type=Path, default=Path(os.environ.get("SPH_DATA", "data")))
    p.add_argument("--models", default="simple_cnn_2d,simple_cnn_3d,sph_cnn_3d")
    p.add_argument("--linear-features", action="store_true", help="plain models without the ReLU on the k features")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    # Subnormals read and made as zero, as sph does (engine/src/kernels/subnormal.rs).
    torch.set_flush_denormal(True)
    train_x, train_y = load(args.data, "mnist", "train")
    test_x, test_y = load(args.data, "mnist", "test")
    train_x, test_x = prepare(train_x, "mnist", 28), prepare(test_x, "mnist", 28)
    train_y, test_y = torch.from_numpy(train_y), torch.from_numpy(test_y)
    for name in args.models.split(","):
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed + 1)
            model = build(name, sphere={"scaling": 1.0, "radius": 1.0})
            if args.linear_features and not name.startswith("sph_"):
                model = vis_cnn(int(name[-2]), False, feature_relu=False)
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            for epoch in range(args.epochs):
                model.train()
                order = torch.randperm(len(train_x), generator=gen)
                for i in range(0, len(order), 128):
                    batch = order[i: i + 128]
                    loss = F.cross_entropy(model(train_x[batch]), train_y[batch])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                model.eval()
                with torch.no_grad():
                    body, last = model[:-1], model[-1]
                    feats = torch.cat([body(test_x[i: i + 500]) for i in range(0, len(test_x), 500)])
                    # The representation: after the head's ReLU (plain), or the pre-activations (spherized).
                    shown = F.relu(feats) if not name.startswith("sph_") and not args.linear_features else feats
                    acc = (torch.cat([last(feats[i: i + 500]) for i in range(0, len(feats), 500)]).argmax(1) == test_y).float().mean().item()
                dead = int((shown.abs().amax(0) == 0).sum().item())
                print(f"{name} seed {seed} epoch {epoch + 1}: test accuracy {100 * acc:.2f}%, dead feature units {dead} of {feats.shape[1]}", flush=True)


if __name__ == "__main__":
    main()
