#!/usr/bin/env python3
"""Training benchmark (issue 8): whole optimizer steps of zoo models, ckpt against torch side by side.

Each case runs in its own process for both engines (so peak RSS is per case): ckpt through
`ckpt bench train --json`, torch through fixtures/train/bench_torch_train.py when torch is
installed. Cases default to the issue's: resnet18 batch 16 at 224 (all trainable, then head only),
vgg11_bn batch 8 at 224, segnet batch 4 at 160. Engines alternate, each engine's best round
counts, and the steal time seen during the case is printed (this VM's host takes CPU in bursts).
"""
import argparse, json, os, subprocess, sys

from bench_forward import cpu_times, have_torch

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
        train = parts[3] if len(parts) > 3 else None
        c, tj = None, None
        steal0, total0 = cpu_times()
        for _ in range(a.rounds):
            cmd = [a.ckpt, "bench", "train", name, "--batch", batch, "--size", size, "--iterations", str(a.iterations), "--json"]
            if train:
                cmd += ["--train", train]
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            if c is None or r["ms_per_step"] < c["ms_per_step"]:
                c = r
            if torch_ok:
                tcmd = [sys.executable, os.path.join(HERE, "..", "fixtures", "train", "bench_torch_train.py"),
                        f"{name}:{batch}:{size}", "--iterations", str(a.iterations)]
                if train:
                    tcmd += ["--train", train]
                t = subprocess.run(tcmd, check=True, capture_output=True, text=True).stdout
                r = json.loads(t.strip().splitlines()[-1])
                if tj is None or r["ms_per_step"] < tj["ms_per_step"]:
                    tj = r
        steal1, total1 = cpu_times()
        steal = 100.0 * (steal1 - steal0) / max(1, total1 - total0)
        row = {"case": case, "ckpt_ms": c["ms_per_step"], "ckpt_img_s": c["images_per_second"],
               "ckpt_gflops": c.get("gflop_per_second"), "ckpt_peak_rss_mb": c.get("peak_rss_bytes", 0) / 2**20,
               "rounds": a.rounds, "steal_percent": steal}
        if torch_ok:
            row.update({"torch_ms": tj["ms_per_step"], "torch_img_s": tj["images_per_second"],
                        "torch_peak_rss_mb": tj["peak_rss_mb"], "ratio": c["images_per_second"] / tj["images_per_second"]})
        rows.append(row)
        line = f"{case:20s} ckpt {row['ckpt_img_s']:6.2f} img/s ({row['ckpt_ms']:7.1f} ms, {row['ckpt_gflops'] or 0:5.1f} GFLOP/s, {row['ckpt_peak_rss_mb']:6.0f} MB)"
        if torch_ok:
            line += f" | torch {row['torch_img_s']:6.2f} img/s ({row['torch_ms']:7.1f} ms, {row['torch_peak_rss_mb']:6.0f} MB) | ratio {row['ratio']:.2f}x"
        line += f" | steal {steal:4.1f}%"
        print(line, flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
