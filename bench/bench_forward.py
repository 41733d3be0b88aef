#!/usr/bin/env python3
"""Forward benchmark (issue 3): eval-mode images/s of zoo models, ckpt against torch side by side.

Each case runs in its own process for both engines (so peak RSS is per case): ckpt through
`ckpt bench forward --json`, torch through fixtures/zoo/bench_torch.py when torch is installed.
Cases default to the issue's: resnet34 batch 1 and 8, resnet50 batch 1, vgg19 batch 1 at 224x224,
segnet at 160x160.

On a shared VM the host takes CPU time away in bursts of seconds (steal time, /proc/stat), which
can slow either engine by 1.5-2x. So each case runs --rounds times, ckpt and torch alternating,
and each engine's best round is compared; the steal seen during the case is printed.
"""
import argparse, json, os, subprocess, sys


def cpu_times():
    """(steal, total) jiffies of all CPUs from /proc/stat, or (0, 0) where there is none."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return v[7] if len(v) > 7 else 0, sum(v)
    except OSError:
        return 0, 0

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = ["resnet34:1:224", "resnet34:8:224", "resnet50:1:224", "vgg19:1:224", "segnet:1:160"]


def have_torch():
    """True when torch and torchvision are installed, found without importing them: a parent that
    imported torch would pass its peak RSS on to every child (Linux keeps ru_maxrss across fork
    and exec), and ckpt's figure would read as at least torch's."""
    import importlib.util
    return importlib.util.find_spec("torch") is not None and importlib.util.find_spec("torchvision") is not None


def side_by_side(case, rounds, ckpt_cmd, torch_cmd, ms_key, width, rate_width):
    """Runs `ckpt_cmd` and `torch_cmd` (None: no torch) `rounds` times, alternating; keeps each
    engine's best round (lowest `ms_key`), prints one line and returns the row."""
    c, tj = None, None
    steal0, total0 = cpu_times()
    for _ in range(rounds):
        r = json.loads(subprocess.run(ckpt_cmd, check=True, capture_output=True, text=True).stdout)
        if c is None or r[ms_key] < c[ms_key]:
            c = r
        if torch_cmd:
            t = subprocess.run(torch_cmd, check=True, capture_output=True, text=True).stdout
            r = json.loads(t.strip().splitlines()[-1])
            if tj is None or r[ms_key] < tj[ms_key]:
                tj = r
    steal1, total1 = cpu_times()
    steal = 100.0 * (steal1 - steal0) / max(1, total1 - total0)
    row = {"case": case, "ckpt_ms": c[ms_key], "ckpt_img_s": c["images_per_second"],
           "ckpt_gflops": c.get("gflop_per_second"), "ckpt_peak_rss_mb": c.get("peak_rss_bytes", 0) / 2**20,
           "rounds": rounds, "steal_percent": steal}
    if torch_cmd:
        row.update({"torch_ms": tj[ms_key], "torch_img_s": tj["images_per_second"],
                    "torch_peak_rss_mb": tj["peak_rss_mb"], "ratio": c["images_per_second"] / tj["images_per_second"]})
    line = (f"{case:{width}s} ckpt {row['ckpt_img_s']:{rate_width}.2f} img/s ({row['ckpt_ms']:7.1f} ms, "
            f"{row['ckpt_gflops'] or 0:5.1f} GFLOP/s, {row['ckpt_peak_rss_mb']:6.0f} MB)")
    if torch_cmd:
        line += (f" | torch {row['torch_img_s']:{rate_width}.2f} img/s ({row['torch_ms']:7.1f} ms, "
                 f"{row['torch_peak_rss_mb']:6.0f} MB) | ratio {row['ratio']:.2f}x")
    line += f" | steal {steal:4.1f}%"
    print(line, flush=True)
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default=".build/release/ckpt")
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3, help="alternating runs per engine; each engine's best counts")
    ap.add_argument("cases", nargs="*", default=CASES)
    a = ap.parse_args()
    torch_ok = have_torch()
    rows = []
    for case in a.cases:
        name, batch, size = case.split(":")
        ckpt_cmd = [a.ckpt, "bench", "forward", name, "--batch", batch, "--size", size,
                    "--iterations", str(a.iterations), "--json"]
        torch_cmd = [sys.executable, os.path.join(HERE, "..", "fixtures", "zoo", "bench_torch.py"), case,
                     "--iterations", str(a.iterations)] if torch_ok else None
        rows.append(side_by_side(case, a.rounds, ckpt_cmd, torch_cmd, "ms_per_batch", width=16, rate_width=7))
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
