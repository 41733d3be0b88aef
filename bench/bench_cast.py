#!/usr/bin/env python3
"""Cast benchmark (issue 12): `ckpt convert --dtype float16|bfloat16` against torch doing the same.

Input: a vgg19 state dict of 575 MB (`ckpt init vgg19`, float32, written once to --dir). Output on
/dev/shm (RAM), so the disk does not set the pace. Per dtype:
  ckpt:  `ckpt convert IN OUT.safetensors --dtype D` (read, cast on both cores, write, fsync)
  torch: a fresh python3: `torch.load(IN, weights_only=True)`, `{k: v.half()}` (or `.bfloat16()`),
         `safetensors.torch.save_file` (start-up and import included); the cast alone is also timed
         inside that process (time.perf_counter around the dict comprehension).
Engines alternate for --rounds rounds; best of each counts. ckpt's user CPU seconds are printed
too (less sensitive to other load than wall time). Steal time seen is printed.
"""
import argparse, json, os, resource, subprocess, sys, tempfile, time

from bench_forward import cpu_times

HERE = os.path.dirname(os.path.abspath(__file__))
TORCH = r'''
import json, sys, time
t0 = time.perf_counter()
import torch
from safetensors.torch import save_file
src, dst, dtype = sys.argv[1], sys.argv[2], sys.argv[3]
sd = torch.load(src, weights_only=True)
t1 = time.perf_counter()
out = {k: (v.half() if dtype == "float16" else v.bfloat16()).contiguous() for k, v in sd.items()}
t2 = time.perf_counter()
save_file(out, dst)
print(json.dumps({"cast": t2 - t1, "total_inside": time.perf_counter() - t0}))
'''


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default=os.path.join(HERE, "..", ".build", "release", "ckpt"))
    p.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "ckpt-bench-cast"))
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    src = os.path.join(a.dir, "vgg19.pth")
    if not os.path.exists(src):
        subprocess.run([a.ckpt, "init", "vgg19", "-o", src], check=True, capture_output=True)
    out_dir = "/dev/shm" if os.path.isdir("/dev/shm") else a.dir
    steal0, total0 = cpu_times()
    print(f"vgg19 state dict, {os.path.getsize(src) / 1e6:.0f} MB float32 -> /dev/shm; {a.rounds} rounds; "
          f"load average {os.getloadavg()[0]:.2f}")
    results = {}
    for dtype in ("float16", "bfloat16"):
        best = {"ckpt": None, "torch": None, "cast": None, "user": None}
        for _ in range(a.rounds):
            dst = os.path.join(out_dir, f"ckpt-bench-{dtype}.safetensors")
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            subprocess.run([a.ckpt, "convert", src, dst, "--dtype", dtype], check=True, capture_output=True)
            wall = time.perf_counter() - t
            user = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - before.ru_utime
            os.remove(dst)
            best["ckpt"] = wall if best["ckpt"] is None else min(best["ckpt"], wall)
            best["user"] = user if best["user"] is None else min(best["user"], user)
            t = time.perf_counter()
            r = subprocess.run([sys.executable, "-c", TORCH, src, dst, dtype], check=True, capture_output=True, text=True)
            wall = time.perf_counter() - t
            os.remove(dst)
            inside = json.loads(r.stdout.strip().splitlines()[-1])
            best["torch"] = wall if best["torch"] is None else min(best["torch"], wall)
            best["cast"] = inside["cast"] if best["cast"] is None else min(best["cast"], inside["cast"])
        results[dtype] = {"ckpt_seconds": best["ckpt"], "ckpt_user_cpu_seconds": best["user"],
                          "torch_seconds": best["torch"], "torch_cast_only_seconds": best["cast"],
                          "ratio": best["torch"] / best["ckpt"]}
        print(f"{dtype}: ckpt convert {best['ckpt']:.2f} s (user CPU {best['user']:.2f} s), torch load + cast + save "
              f"{best['torch']:.2f} s (the cast alone {best['cast']:.2f} s): {best['torch'] / best['ckpt']:.2f}x")
    steal1, total1 = cpu_times()
    print(f"steal during the run: {100.0 * (steal1 - steal0) / max(1, total1 - total0):.1f}%")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
