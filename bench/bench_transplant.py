#!/usr/bin/env python3
"""Transplant benchmark: the seed tutorial's SegNet surgery, ckpt against PyTorch side by side.

Case: a full vgg19_bn state dict (random init, torch.save, 575 MB; the same file bench_io.py
uses) -> the seed's SegNet (fixtures/surgery/seed_segnet.py), written to disk.
  ckpt:   `ckpt transplant vgg19_bn.pth --into segnet -o X --force` (with its verification on)
  python: a fresh `python3` process (start-up and imports included) doing the seed's surgery:
          torch.load the vgg19_bn state dict, build SegNet(2) from it exactly as the post does
          (vgg19_bn() + load_state_dict, slicing features.children()), torch.save(segnet.state_dict()).

Each round runs both engines (the order alternates between rounds); each engine's best wall time
counts. Peak RSS is the child's maximum resident set as /usr/bin/time reports it (%M), from the
same run. The page cache is warmed before the first round. When torch is importable the two
outputs are compared at the end (encoder tensors equal, key sets equal). Without torch only the
ckpt side runs (the source is then written by ckpt from a safetensors file, as bench_io.py does).

usage: python3 bench/bench_transplant.py --ckpt .build/release/ckpt [--rounds 3] [--file PATH] [--json]
"""
import argparse, json, os, platform, shutil, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
SURGERY = os.path.abspath(os.path.join(HERE, "..", "fixtures", "surgery"))
sys.path.insert(0, HERE)
from bench_io import have_torch, make_checkpoint  # noqa: E402
from bench_forward import cpu_times  # noqa: E402

# The Python side, run as `python3 -c PY_SURGERY SURGERY_DIR SOURCE OUT`.
PY_SURGERY = """
import sys
sys.path.insert(0, sys.argv[1])
import torch
import seed_segnet
seed_segnet.vgg19_bn_path = sys.argv[2]
segnet = seed_segnet.SegNet(num_classes=2)
torch.save(segnet.state_dict(), sys.argv[3])
"""


def timed(cmd):
    """(wall seconds, peak RSS KiB or None) of one run of cmd; raises with its stderr on failure."""
    use_time = os.path.exists("/usr/bin/time")
    full = (["/usr/bin/time", "-f", "CKPT_BENCH_RSS %M"] if use_time else []) + cmd
    t = time.perf_counter()
    r = subprocess.run(full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr.strip()[-2000:]}")
    rss = None
    for line in r.stderr.splitlines():
        if line.startswith("CKPT_BENCH_RSS "):
            rss = int(line.split()[1])
    return wall, rss


def compare_outputs(a, b):
    """Equal key sets, and every tensor equal that both got from the source (enc*)."""
    import torch
    x, y = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    if list(x) != list(y) and set(x) != set(y):
        return f"key sets differ: only ckpt {sorted(set(x) - set(y))[:3]}, only python {sorted(set(y) - set(x))[:3]}"
    enc = [k for k in x if k.startswith("enc")]
    bad = [k for k in enc if x[k].dtype != y[k].dtype or not torch.equal(x[k], y[k])]
    order = "same order" if list(x) == list(y) else "different key order"
    return f"{len(x)} keys ({order}); {len(enc) - len(bad)}/{len(enc)} encoder tensors equal" + (f", differ: {bad[:3]}" if bad else "")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default=".build/release/ckpt")
    ap.add_argument("--file", default=os.path.join(tempfile.gettempdir(), "ckpt-bench", "vgg19_bn.pth"))
    ap.add_argument("--rounds", type=int, default=3, help="runs per engine, alternating; each engine's best counts")
    ap.add_argument("--json", action="store_true", help="print only the JSON result")
    a = ap.parse_args()
    make_checkpoint(a.file, a.ckpt)
    size = os.path.getsize(a.file)
    torch_ok = have_torch()
    with open(a.file, "rb") as f:  # warm the page cache so both engines start alike
        while f.read(1 << 24):
            pass

    tmp = tempfile.mkdtemp(prefix="ckpt-bench-transplant-")
    try:
        out_c, out_p = os.path.join(tmp, "segnet_ckpt.pth"), os.path.join(tmp, "segnet_torch.pth")
        engines = {"ckpt": [a.ckpt, "transplant", a.file, "--into", "segnet", "-o", out_c, "--force"]}
        if torch_ok:
            engines["python"] = [sys.executable, "-c", PY_SURGERY, SURGERY, a.file, out_p]
        best = {e: (float("inf"), None) for e in engines}
        walls = {e: [] for e in engines}
        steal0, total0 = cpu_times()
        for r in range(a.rounds):
            order = list(engines) if r % 2 == 0 else list(reversed(list(engines)))
            for e in order:
                wall, rss = timed(engines[e])
                walls[e].append(wall)
                if wall < best[e][0]:
                    best[e] = (wall, rss)
                if not a.json:
                    print(f"  round {r + 1} {e:6s} {wall:7.2f} s  {(rss or 0) / 1024:7.0f} MiB", flush=True)
        steal1, total1 = cpu_times()
        res = {"case": "vgg19_bn -> segnet (seed SegNet, written to disk)", "file": a.file, "file_bytes": size,
               "machine": f"{platform.machine()}, {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d"),
               "rounds": a.rounds, "steal_percent": 100.0 * (steal1 - steal0) / max(1, total1 - total0),
               "ckpt_s": best["ckpt"][0], "ckpt_peak_rss_mib": (best["ckpt"][1] or 0) / 1024,
               "ckpt_all_s": walls["ckpt"], "ckpt_output_bytes": os.path.getsize(out_c), "torch": None}
        if torch_ok:
            import torch
            res.update({"torch": torch.__version__, "python_s": best["python"][0],
                        "python_peak_rss_mib": (best["python"][1] or 0) / 1024, "python_all_s": walls["python"],
                        "python_output_bytes": os.path.getsize(out_p),
                        "speedup": best["python"][0] / best["ckpt"][0],
                        "rss_ratio": (best["python"][1] or 0) / max(1, best["ckpt"][1] or 0),
                        "outputs": compare_outputs(out_c, out_p)})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    if a.json:
        print(json.dumps(res, indent=2))
        return
    print(f"source: {a.file} ({size / 1e6:.0f} MB), {res['machine']}, torch {res['torch']}, best of {a.rounds}, "
          f"steal {res['steal_percent']:.1f}%")
    print(f"ckpt transplant      {res['ckpt_s']:7.2f} s  peak RSS {res['ckpt_peak_rss_mib']:7.0f} MiB  "
          f"output {res['ckpt_output_bytes'] / 1e6:6.1f} MB")
    if torch_ok:
        print(f"python seed surgery  {res['python_s']:7.2f} s  peak RSS {res['python_peak_rss_mib']:7.0f} MiB  "
              f"output {res['python_output_bytes'] / 1e6:6.1f} MB")
        print(f"ratio python/ckpt: wall {res['speedup']:.2f}x, peak RSS {res['rss_ratio']:.2f}x; outputs: {res['outputs']}")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
