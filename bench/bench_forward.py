#!/usr/bin/env python3
"""Forward benchmark (issue 3): eval-mode images/s of zoo models, ckpt against torch side by side.

Each case runs in its own process for both engines (so peak RSS is per case): ckpt through
`ckpt bench forward --json`, torch through fixtures/zoo/bench_torch.py when torch is installed.
Cases default to the issue's: resnet34 batch 1 and 8, resnet50 batch 1, vgg19 batch 1 at 224x224,
segnet at 160x160.
"""
import argparse, json, os, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = ["resnet34:1:224", "resnet34:8:224", "resnet50:1:224", "vgg19:1:224", "segnet:1:160"]


def have_torch():
    try:
        import torch  # noqa: F401
        return True
    except Exception:
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default=".build/release/ckpt")
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("cases", nargs="*", default=CASES)
    a = ap.parse_args()
    torch_ok = have_torch()
    rows = []
    for case in a.cases:
        name, batch, size = case.split(":")
        out = subprocess.run([a.ckpt, "bench", "forward", name, "--batch", batch, "--size", size,
                              "--iterations", str(a.iterations), "--json"], check=True, capture_output=True, text=True).stdout
        c = json.loads(out)
        row = {"case": case, "ckpt_ms": c["ms_per_batch"], "ckpt_img_s": c["images_per_second"],
               "ckpt_gflops": c.get("gflop_per_second"), "ckpt_peak_rss_mb": c.get("peak_rss_bytes", 0) / 2**20}
        if torch_ok:
            t = subprocess.run([sys.executable, os.path.join(HERE, "..", "fixtures", "zoo", "bench_torch.py"), case,
                                "--iterations", str(a.iterations)], check=True, capture_output=True, text=True).stdout
            tj = json.loads(t.strip().splitlines()[-1])
            row.update({"torch_ms": tj["ms_per_batch"], "torch_img_s": tj["images_per_second"],
                        "torch_peak_rss_mb": tj["peak_rss_mb"], "ratio": c["images_per_second"] / tj["images_per_second"]})
        rows.append(row)
        line = f"{case:16s} ckpt {row['ckpt_img_s']:7.2f} img/s ({row['ckpt_ms']:7.1f} ms, {row['ckpt_gflops'] or 0:5.1f} GFLOP/s, {row['ckpt_peak_rss_mb']:6.0f} MB)"
        if torch_ok:
            line += f" | torch {row['torch_img_s']:7.2f} img/s ({row['torch_ms']:7.1f} ms, {row['torch_peak_rss_mb']:6.0f} MB) | ratio {row['ratio']:.2f}x"
        print(line, flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
