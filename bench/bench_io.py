#!/usr/bin/env python3
"""Checkpoint I/O benchmark: ckpt against PyTorch, side by side in one run.

Measures on a vgg19_bn-shaped checkpoint (575 MB, float32, torchvision keys):
  1. `ckpt inspect` wall time and peak RSS, vs `python -c "torch.load(f, mmap=True)"`.
  2. reading every tensor into memory: `ckpt bench read` vs `torch.load(f, weights_only=True)`.
  3. `ckpt convert` to safetensors and back: peak RSS vs the file size.
The checkpoint is generated (torchvision when present, else a pure-Python writer of the same
keys and shapes with random bytes), never downloaded. Results print as a table and JSON.
"""
import argparse, json, os, platform, random, resource, shlex, shutil, struct, subprocess, sys, tempfile, time

VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]


from bench_forward import have_torch  # noqa: E402


def vgg19_bn_shapes():
    """(key, shape, dtype) in torchvision's state-dict order."""
    out, i, c = [], 0, 3
    for v in VGG19_CFG:
        if v == "M":
            i += 1
            continue
        out += [(f"features.{i}.weight", [v, c, 3, 3], "F32"), (f"features.{i}.bias", [v], "F32")]
        b = i + 1
        out += [(f"features.{b}.weight", [v], "F32"), (f"features.{b}.bias", [v], "F32"),
                (f"features.{b}.running_mean", [v], "F32"), (f"features.{b}.running_var", [v], "F32"),
                (f"features.{b}.num_batches_tracked", [], "I64")]
        i += 3
        c = v
    for j, (o, n) in zip((0, 3, 6), ((4096, 512 * 7 * 7), (4096, 4096), (1000, 4096))):
        out += [(f"classifier.{j}.weight", [o, n], "F32"), (f"classifier.{j}.bias", [o], "F32")]
    return out


def write_safetensors(path, shapes):
    """A safetensors file of the given tensors with random contents (no numpy or torch needed)."""
    header, off = {}, 0
    for k, s, d in shapes:
        n = 1
        for x in s:
            n *= x
        size = n * (4 if d == "F32" else 8)
        header[k] = {"dtype": d, "shape": s, "data_offsets": [off, off + size]}
        off += size
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    rnd = random.Random(0)
    block = bytes(rnd.getrandbits(8) for _ in range(1 << 20))
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        left = off
        while left:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n


def make_checkpoint(path, ckpt):
    if os.path.exists(path):
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if have_torch():
        subprocess.run([sys.executable, "-c", (
            "import torch, torchvision; torch.manual_seed(0); "
            f"torch.save(torchvision.models.vgg19_bn().state_dict(), {path!r})")], check=True)
    else:
        st = path + ".tmp.safetensors"
        write_safetensors(st, vgg19_bn_shapes())
        subprocess.run([ckpt, "convert", st, path], check=True, stdout=subprocess.DEVNULL)
        os.remove(st)


def run_timed(cmd, repeat):
    """Best wall time and the peak RSS (KiB) of the child over `repeat` runs."""
    best, rss = float("inf"), 0
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - t)
        # ru_maxrss of children is the max over all waited children; use /usr/bin/time for exact values
    return best


def peak_rss_kib(cmd):
    out = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, check=True, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True).stderr.strip().splitlines()[-1]
    return int(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default=".build/release/ckpt")
    ap.add_argument("--file", default=os.path.join(tempfile.gettempdir(), "ckpt-bench", "vgg19_bn.pth"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    make_checkpoint(a.file, a.ckpt)
    size = os.path.getsize(a.file)
    torch_ok = have_torch()
    r = {"file": a.file, "file_bytes": size, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
         "date": time.strftime("%Y-%m-%d"), "torch": None}
    # warm the page cache so every reader starts alike
    with open(a.file, "rb") as f:
        while f.read(1 << 24):
            pass

    # the physical limits beside the figures: reading the (cached) file once, as `cat` does, and
    # copying it to a new file with its fsync, which is all a format conversion must do at least
    r["cat_s"] = run_timed(["sh", "-c", f"cat {shlex.quote(a.file)} > /dev/null"], a.repeat)
    r["cat_gbps"] = size / r["cat_s"] / 1e9
    copy_dir = tempfile.mkdtemp()
    try:
        dst = os.path.join(copy_dir, "copy.pth")
        r["copy_fsync_s"] = run_timed(["sh", "-c", f"cp {shlex.quote(a.file)} {shlex.quote(dst)} && sync {shlex.quote(dst)}"], a.repeat)
    finally:
        shutil.rmtree(copy_dir)

    r["inspect_ms"] = run_timed([a.ckpt, "inspect", a.file], a.repeat) * 1000
    r["inspect_peak_rss_mib"] = peak_rss_kib([a.ckpt, "inspect", a.file]) / 1024
    if torch_ok:
        import torch
        r["torch"] = torch.__version__
        load_mmap = [sys.executable, "-c", f"import torch; torch.load({a.file!r}, mmap=True, weights_only=True)"]
        r["torch_mmap_load_ms"] = run_timed(load_mmap, a.repeat) * 1000
        r["torch_mmap_load_peak_rss_mib"] = peak_rss_kib(load_mmap) / 1024

    out = subprocess.run([a.ckpt, "bench", "read", "--json", "--iterations", str(a.repeat), a.file],
                         check=True, capture_output=True, text=True).stdout
    br = json.loads(out)
    r["ckpt_read_gbps"] = br["bytes_per_second"] / 1e9
    r["memcpy_gbps"] = br["memcpy_bytes_per_second"] / 1e9
    if torch_ok:
        import torch
        best = float("inf")
        for _ in range(a.repeat):
            t = time.perf_counter()
            sd = torch.load(a.file, weights_only=True)
            best = min(best, time.perf_counter() - t)
            n = sum(v.numel() * v.element_size() for v in sd.values())
            del sd
        r["torch_load_gbps"] = n / best / 1e9
        r["read_ratio_vs_torch"] = r["ckpt_read_gbps"] / r["torch_load_gbps"]

    # zero-copy: every tensor resident through the file mapping, one byte read per page
    out = subprocess.run([a.ckpt, "bench", "read", "--mapped", "--json", "--iterations", str(a.repeat), a.file],
                         check=True, capture_output=True, text=True).stdout
    r["ckpt_mapped_gbps"] = json.loads(out)["bytes_per_second"] / 1e9
    if torch_ok:
        code = (f"import torch, time, json\nbest = 9e9\nfor _ in range({a.repeat}):\n"
                f"    t = time.perf_counter(); sd = torch.load({a.file!r}, mmap=True, weights_only=True)\n"
                "    n = 0\n    for v in sd.values():\n        f = v.reshape(-1)\n"
                "        step = max(1, 4096 // v.element_size())\n        if f.numel(): float(f[::step].sum())\n"
                "        n += v.numel() * v.element_size()\n    best = min(best, time.perf_counter() - t)\n"
                "print(json.dumps(n / best))")
        res = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
        r["torch_mmap_touch_gbps"] = float(res.strip().splitlines()[-1]) / 1e9
        r["mapped_ratio_vs_torch_mmap"] = r["ckpt_mapped_gbps"] / r["torch_mmap_touch_gbps"]

    tmp = tempfile.mkdtemp()
    try:
        st, back = os.path.join(tmp, "x.safetensors"), os.path.join(tmp, "back.pth")
        r["convert_to_safetensors_peak_rss_mib"] = peak_rss_kib([a.ckpt, "convert", a.file, st]) / 1024
        r["convert_back_peak_rss_mib"] = peak_rss_kib([a.ckpt, "convert", st, back]) / 1024
        t = time.perf_counter()
        subprocess.run([a.ckpt, "convert", a.file, st], check=True, stdout=subprocess.DEVNULL)
        r["convert_to_safetensors_s"] = time.perf_counter() - t
        same = subprocess.run([a.ckpt, "diff", a.file, back], stdout=subprocess.DEVNULL).returncode == 0
        r["round_trip_identical"] = same
        if torch_ok:
            import torch
            from safetensors.torch import save_file  # noqa
            cmd = [sys.executable, "-c", f"import torch; from safetensors.torch import save_file; save_file(torch.load({a.file!r}, weights_only=True), {os.path.join(tmp, 't.safetensors')!r})"]
            r["torch_convert_peak_rss_mib"] = peak_rss_kib(cmd) / 1024
            # wall time, engines alternating: ckpt's convert fsyncs (its atomic rename needs it);
            # torch's load + save_file does not, so it is timed both ways, and in-process (after
            # `import torch`) to tell Python's start-up from the work
            code = ("import os, sys, time, json\nt0 = time.perf_counter()\nimport torch\n"
                    "from safetensors.torch import save_file\nt1 = time.perf_counter()\n"
                    "save_file(torch.load(sys.argv[1], weights_only=True), sys.argv[2])\nt2 = time.perf_counter()\n"
                    "fd = os.open(sys.argv[2], os.O_RDONLY); os.fsync(fd); os.close(fd)\nt3 = time.perf_counter()\n"
                    "print(json.dumps([t1 - t0, t2 - t1, t3 - t2]))")
            best = {"ckpt": 9e9, "torch_import": 9e9, "torch_work": 9e9, "torch_fsync": 9e9, "torch_whole": 9e9}
            for _ in range(a.repeat):
                if os.path.exists(st):
                    os.remove(st)
                t = time.perf_counter()
                subprocess.run([a.ckpt, "convert", a.file, st], check=True, stdout=subprocess.DEVNULL)
                best["ckpt"] = min(best["ckpt"], time.perf_counter() - t)
                t = time.perf_counter()
                out = subprocess.run([sys.executable, "-c", code, a.file, os.path.join(tmp, "t.safetensors")],
                                     check=True, capture_output=True, text=True).stdout
                whole = time.perf_counter() - t
                imp, work, sync = json.loads(out.strip().splitlines()[-1])
                best["torch_import"] = min(best["torch_import"], imp)
                best["torch_work"] = min(best["torch_work"], work)
                best["torch_fsync"] = min(best["torch_fsync"], sync)
                best["torch_whole"] = min(best["torch_whole"], whole)
            r["convert_wall_s"] = best
    finally:
        shutil.rmtree(tmp)

    if a.json:
        print(json.dumps(r, indent=2))
        return
    print(f"checkpoint: {a.file} ({size / 1e6:.0f} MB), {r['machine']}, torch {r['torch']}")
    print(f"inspect:  ckpt {r['inspect_ms']:.1f} ms, peak RSS {r['inspect_peak_rss_mib']:.1f} MiB", end="")
    if torch_ok:
        print(f"  | python+torch.load(mmap=True) {r['torch_mmap_load_ms']:.0f} ms, {r['torch_mmap_load_peak_rss_mib']:.0f} MiB"
              f"  ({r['torch_mmap_load_ms'] / r['inspect_ms']:.0f}x)")
    else:
        print()
    print(f"read all: ckpt {r['ckpt_read_gbps']:.2f} GB/s", end="")
    if torch_ok:
        print(f"  | torch.load {r['torch_load_gbps']:.2f} GB/s  (ratio {r['read_ratio_vs_torch']:.2f}x)", end="")
    print(f"  | memcpy {r['memcpy_gbps']:.2f} GB/s | cat {r['cat_gbps']:.2f} GB/s")
    print(f"resident: ckpt (mapped, zero-copy) {r['ckpt_mapped_gbps']:.2f} GB/s", end="")
    if torch_ok:
        print(f"  | torch.load(mmap=True) + touch every page {r['torch_mmap_touch_gbps']:.2f} GB/s  (ratio {r['mapped_ratio_vs_torch_mmap']:.2f}x)")
    else:
        print()
    print(f"convert:  to safetensors peak RSS {r['convert_to_safetensors_peak_rss_mib']:.0f} MiB, back {r['convert_back_peak_rss_mib']:.0f} MiB"
          f" (file {size / 2**20:.0f} MiB), {r['convert_to_safetensors_s']:.2f} s, round trip identical: {r['round_trip_identical']}", end="")
    if torch_ok:
        print(f"  | torch.load+save_file {r['torch_convert_peak_rss_mib']:.0f} MiB")
        b = r["convert_wall_s"]
        print(f"convert wall: ckpt {b['ckpt']:.2f} s (fsync included) | torch whole command {b['torch_whole']:.2f} s without fsync"
              f" (import {b['torch_import']:.2f} s, load+save_file {b['torch_work']:.2f} s), fsync after it {b['torch_fsync']:.2f} s")
        print(f"              the file's own copy (cp + sync): {r['copy_fsync_s']:.2f} s")
    else:
        print()
    print(json.dumps(r))


if __name__ == "__main__":
    main()
