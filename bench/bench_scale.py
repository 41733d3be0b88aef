#!/usr/bin/env python3
"""Scale benchmark: peak resident memory and wall time of `ckpt inspect` and `ckpt convert X.pth
Y.safetensors` against torch.load (+ safetensors' save_file for convert), as the tensor count
grows (100 to 300,000 small tensors) and as the file grows (50 MB to 10 GB).

Files are generated, measured and deleted one at a time (the largest needs ~20 GB of disk while
it is measured): by torch.save when torch is installed; the 10 GB file (too large to hold in
memory for torch.save) and every file without torch are written as a sparse safetensors file and
turned into a torch .pth by `ckpt convert`, which writes every byte (torch loads the result).
torch reads files of 1 GB and more with mmap=True (as a user with less memory than the file
would); below that with a plain torch.load. Each command runs under /usr/bin/time; ckpt and torch
alternate, best wall time of --rounds rounds, highest peak RSS. Prints a table and JSON.
"""
import argparse, json, os, shutil, struct, subprocess, sys, tempfile

from bench_forward import cpu_times, have_torch

COUNTS = [100, 1_000, 12_000, 100_000, 300_000]
SIZES = [("50 MB", 50 * 10**6), ("1 GB", 10**9), ("10 GB", 10 * 10**9)]
SMALL_ELEMENTS = 16          # float32 elements per tensor in the tensor-count cases (64 bytes)
BIG_TENSOR = 16 << 20        # bytes per tensor in the file-size cases

TORCH_SAVE = """
import collections, sys, torch
n, e, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
sd = collections.OrderedDict()
for i in range(n):
    sd[f"layer{i // 10}.block.{i % 10}.weight"] = torch.full((e,), float(i % 1000))
torch.save(sd, path)
"""

TORCH_INSPECT = """
import sys, torch
sd = torch.load(sys.argv[1], weights_only=True, mmap=sys.argv[2] == "1")
print(len(sd), sum(t.numel() for t in sd.values()))
"""

TORCH_CONVERT = """
import sys, torch
from safetensors.torch import save_file
sd = torch.load(sys.argv[1], weights_only=True, mmap=sys.argv[3] == "1")
save_file(sd, sys.argv[2])
"""


def write_sparse_safetensors(path, n, elements):
    """n float32 tensors of `elements` zeros each; the data is a hole (no disk, written at once)."""
    header, off = {}, 0
    for i in range(n):
        size = elements * 4
        header[f"layer{i // 10}.block.{i % 10}.weight"] = {"dtype": "F32", "shape": [elements], "data_offsets": [off, off + size]}
        off += size
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        f.truncate(8 + len(h) + off)


def generate(ckpt, torch, n, elements, path, work):
    if torch and n * elements * 4 < 4 * 10**9:
        subprocess.run([sys.executable, "-c", TORCH_SAVE, str(n), str(elements), path], check=True)
        return "torch.save"
    src = os.path.join(work, "source.safetensors")
    write_sparse_safetensors(src, n, elements)
    subprocess.run([ckpt, "convert", src, path], check=True, stdout=subprocess.DEVNULL)
    os.remove(src)
    return "ckpt convert of a sparse safetensors file"


def measured(cmd):
    """(wall seconds, peak RSS KiB) of one run under /usr/bin/time."""
    r = subprocess.run(["/usr/bin/time", "-f", "%e %M"] + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr.strip()[-400:]}")
    wall, kib = r.stderr.strip().splitlines()[-1].split()
    return float(wall), int(kib)


def side_by_side(rounds, commands, cleanup):
    """Best wall time and highest peak RSS of each named command, alternating them each round."""
    best = {name: (float("inf"), 0) for name in commands}
    for _ in range(rounds):
        for name, cmd in commands.items():
            wall, kib = measured(cmd)
            cleanup()
            t, k = best[name]
            best[name] = (min(t, wall), max(k, kib))
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default=".build/release/ckpt")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-bytes", type=float, default=11e9, help="skip file-size cases above this many bytes")
    ap.add_argument("--counts", default=",".join(map(str, COUNTS)))
    ap.add_argument("--dir", default=None, help="where files are written (default: a temporary folder)")
    args = ap.parse_args()
    ckpt = os.path.abspath(args.ckpt)
    torch = have_torch()
    cases = [(f"{n:,} tensors", n, SMALL_ELEMENTS) for n in map(int, args.counts.split(",")) if n > 0]
    # at least 16 tensors; at most 16 MiB each
    cases += [(label, max(16, size // BIG_TENSOR), size // max(16, size // BIG_TENSOR) // 4)
              for label, size in SIZES if size <= args.max_bytes]
    work = tempfile.mkdtemp(prefix="ckpt-scale-", dir=args.dir)
    steal0, total0 = cpu_times()
    load0 = os.getloadavg()
    rows = []
    try:
        for label, n, elements in cases:
            path = os.path.join(work, "x.pth")
            out = os.path.join(work, "y.safetensors")
            how = generate(ckpt, torch, n, elements, path, work)
            size = os.path.getsize(path)
            mmap = "1" if size >= 10**9 else "0"

            def cleanup():
                if os.path.exists(out):
                    os.remove(out)
            inspect = {"ckpt": [ckpt, "inspect", path]}
            convert = {"ckpt": [ckpt, "convert", path, out]}
            if torch:
                inspect["torch"] = [sys.executable, "-c", TORCH_INSPECT, path, mmap]
                convert["torch"] = [sys.executable, "-c", TORCH_CONVERT, path, out, mmap]
            row = {"case": label, "tensors": n, "bytes": size, "generated_by": how, "torch_mmap": mmap == "1",
                   "inspect": side_by_side(args.rounds, inspect, cleanup),
                   "convert": side_by_side(args.rounds, convert, cleanup)}
            rows.append(row)
            os.remove(path)
            print(f"  done: {label} ({size:,} bytes)", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    steal1, total1 = cpu_times()
    load1 = os.getloadavg()

    def cell(r, op, who):
        if who not in r[op]:
            return "-"
        t, k = r[op][who]
        return f"{k / 1024:,.0f} MiB {t:.2f} s"
    def human(b):
        return f"{b / 1e9:.2f} GB" if b >= 10**9 else f"{b / 1e6:.1f} MB" if b >= 10**6 else f"{b / 1e3:.0f} KB"
    head = f"{'case':<17} {'file':>9}  {'ckpt inspect':>20} {'torch.load':>20}  {'ckpt convert':>20} {'torch + save_file':>20}"
    print(head)
    print("-" * len(head))
    for r in rows:
        star = "*" if r["torch_mmap"] else ""
        print(f"{r['case']:<17} {human(r['bytes']):>9}  {cell(r, 'inspect', 'ckpt'):>20} {cell(r, 'inspect', 'torch') + star:>20}  "
              f"{cell(r, 'convert', 'ckpt'):>20} {cell(r, 'convert', 'torch') + star:>20}")
    print("peak RSS and best wall time of", args.rounds, "rounds; * torch.load(mmap=True). ckpt convert fsyncs its output "
          "(0.5-2 s of its time on this machine for the GB files); save_file does not.")
    steal = 100 * (steal1 - steal0) / max(1, total1 - total0)
    print(f"load average {load0[0]:.2f} before, {load1[0]:.2f} after; steal {steal:.1f} %")
    print(json.dumps({"rows": rows, "load": [load0[0], load1[0]], "steal_percent": steal}, default=list))


if __name__ == "__main__":
    main()
