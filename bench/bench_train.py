#!/usr/bin/env python3
"""Training benchmark (issue 8): whole optimizer steps of zoo models, ckpt against torch side by side.

Each case runs in its own process for both engines (so peak RSS is per case): ckpt through
`ckpt bench train --json`, torch through fixtures/train/bench_torch_train.py when torch is
installed. Cases default to the issue's: resnet18 batch 16 at 224 (all trainable, then head only),
vgg11_bn batch 8 at 224, segnet batch 4 at 160. Engines alternate, each engine's best round
counts, and the steal time seen during the case is printed (this VM's host takes CPU in bursts).
"""
import argparse, json, os, sys

from bench_forward import have_torch, side_by_side

HERE = os.path.dirname(os.path.abspath(__file__))
# MODEL:BATCH:SIZE[:TRAIN]
CASES = ["resnet18:16:224", "resnet18:16:224:fc", "vgg11_bn:8:224", "segnet:4:160"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default=".build/release/ckpt")
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3, help="alternating runs per engine; each engine's best counts")
    ap.add_argument("cases", nargs="*", default=CASES)
    a = ap.parse_args()
    torch_ok = have_torch()
    rows = []
    for case in a.cases:
        parts = case.split(":")
        name, batch, size = parts[:3]
        train = ["--train", parts[3]] if len(parts) > 3 else []
        ckpt_cmd = [a.ckpt, "bench", "train", name, "--batch", batch, "--size", size,
                    "--iterations", str(a.iterations), "--json"] + train
        torch_cmd = [sys.executable, os.path.join(HERE, "..", "fixtures", "train", "bench_torch_train.py"),
                     f"{name}:{batch}:{size}", "--iterations", str(a.iterations)] + train if torch_ok else None
        rows.append(side_by_side(case, a.rounds, ckpt_cmd, torch_cmd, "ms_per_step", width=20, rate_width=6))
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
