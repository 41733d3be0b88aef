#!/usr/bin/env python3
"""Data-loading benchmark (issue 9): decoded + transformed images per second, ckpt against torchvision.

A folder of ~200 JPEGs of 500x375 (photo-like content synthesised with numpy and PIL, 4 classes;
written once to --dir) is read epoch after epoch with the training transform
(RandomResizedCrop(224), RandomHorizontalFlip, ToTensor, Normalize) into batches of 32:
  ckpt:  `ckpt bench data DIR --json` (its BatchLoader, --workers threads)
  torch: torchvision.datasets.ImageFolder + DataLoader(num_workers=--workers, shuffle=True)
Each engine runs a warm-up epoch, then --epochs timed epochs; its best epoch counts. Engines
alternate for --rounds rounds; each engine's best round counts. Steal time seen during the run is
printed (this VM's host takes CPU in bursts).

The torch side runs in a child Python: a parent that has imported torch would hand its resident
set to every process it starts (Linux keeps ru_maxrss across fork + exec), and ckpt's peak RSS
would read as torch's.

Wall-clock rates suffer when other work shares the cores, so the CPU time per image is measured
too, on one thread (ckpt --workers 0, DataLoader num_workers=0), warm-up epoch and start-up
included: process CPU time / images decoded.
"""
import argparse, json, os, resource, subprocess, sys, time

import numpy as np

from bench_forward import cpu_times

HERE = os.path.dirname(os.path.abspath(__file__))


def make_folder(root, count, width, height):
    """count JPEGs (quality 90, 4:2:0) spread over 4 class folders; kept if already there."""
    from PIL import Image, ImageDraw, ImageFilter
    marker = os.path.join(root, f".complete-{count}-{width}x{height}")
    if os.path.exists(marker):
        return
    rng = np.random.RandomState(0)
    for i in range(count):
        cls = os.path.join(root, f"class{i % 4}")
        os.makedirs(cls, exist_ok=True)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        t = (yy / height)[..., None]
        arr = rng.uniform(0, 255, 3) * (1 - t) + rng.uniform(0, 255, 3) * t
        for _ in range(5):
            cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(30, 200)
            arr += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))[..., None] * rng.uniform(-100, 100, 3)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        d = ImageDraw.Draw(img)
        for _ in range(12):
            x0, x1 = sorted(rng.uniform(0, width, 2))
            y0, y1 = sorted(rng.uniform(0, height, 2))
            d.ellipse([x0, y0, x1, y1], fill=tuple(int(c) for c in rng.randint(0, 256, 3)))
        img = img.filter(ImageFilter.GaussianBlur(1))
        noisy = np.asarray(img).astype(np.float32) + rng.normal(0, 5, (height, width, 3))
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(os.path.join(cls, f"{i:04d}.jpg"), quality=90)
    open(marker, "w").close()


def ckpt_cpu_per_image(a):
    """CPU seconds per image of `ckpt bench data --workers 0`, start-up and warm-up included."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cmd = [a.ckpt, "bench", "data", a.dir, "--json", "--workers", "0", "--epochs", str(a.epochs + 1),
           "--batch", str(a.batch), "--size", str(a.size), "--transform", a.transform]
    r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu / (r["images"] * (a.epochs + 1))


def torch_cpu_per_image(a):
    """CPU seconds per image of ImageFolder + DataLoader(num_workers=0), all epochs."""
    import torch
    torch.set_num_threads(1)
    start = time.process_time()
    r = torch_rate(a.dir, 0, a.epochs, a.batch, a.size)
    return (time.process_time() - start) / (r["images"] * (a.epochs + 1))


def in_child(a, what):
    """Runs this script's torch side (`--torch rate|cpu`) in a fresh Python; its JSON result."""
    cmd = [sys.executable, os.path.abspath(__file__), "--torch", what, "--dir", a.dir, "--workers", str(a.workers),
           "--epochs", str(a.epochs), "--batch", str(a.batch), "--size", str(a.size)]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])


from bench_forward import have_torch  # noqa: E402


def torch_rate(root, workers, epochs, batch, size):
    import torch
    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder
    torch.manual_seed(0)
    tf = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    ds = ImageFolder(root, transform=tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                                         persistent_workers=workers > 0)
    best, n = float("inf"), 0
    for epoch in range(epochs + 1):
        start = time.perf_counter()
        n = 0
        for x, _ in loader:
            n += x.shape[0]
        if epoch > 0:
            best = min(best, time.perf_counter() - start)
    return {"images": n, "seconds": best, "images_per_second": n / best}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default=".build/release/ckpt")
    ap.add_argument("--dir", default="/tmp/ckpt-bench-data")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs after the warm-up")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--transform", default="train", choices=["train", "eval", "no-augment"])
    ap.add_argument("--torch", choices=["rate", "cpu"], help=argparse.SUPPRESS)  # the child's job
    a = ap.parse_args()
    if a.torch == "rate":
        print(json.dumps(torch_rate(a.dir, a.workers, a.epochs, a.batch, a.size)))
        return
    if a.torch == "cpu":
        print(json.dumps({"cpu_seconds_per_image": torch_cpu_per_image(a)}))
        return
    make_folder(a.dir, a.images, 500, 375)
    torch_ok = have_torch() and a.transform == "train"
    c, t = None, None
    steal0, total0 = cpu_times()
    for _ in range(a.rounds):
        cmd = [a.ckpt, "bench", "data", a.dir, "--json", "--workers", str(a.workers), "--epochs", str(a.epochs + 1),
               "--batch", str(a.batch), "--size", str(a.size), "--transform", a.transform]
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        if c is None or r["images_per_second"] > c["images_per_second"]:
            c = r
        if torch_ok:
            r = in_child(a, "rate")
            if t is None or r["images_per_second"] > t["images_per_second"]:
                t = r
    cc = min(ckpt_cpu_per_image(a) for _ in range(a.rounds))
    tc = min(in_child(a, "cpu")["cpu_seconds_per_image"] for _ in range(a.rounds)) if torch_ok else None
    steal1, total1 = cpu_times()
    steal = 100.0 * (steal1 - steal0) / max(1, total1 - total0)
    print(f"{a.images} JPEGs of 500x375, {a.transform} transform to {a.size}, batch {a.batch}, {a.workers} workers "
          f"(steal {steal:.1f}% of CPU time during the run)")
    print(f"  ckpt   {c['images_per_second']:8.1f} images/s  ({c['images']} images in {c['seconds']:.3f} s, "
          f"peak RSS {c['peak_rss_bytes'] / 1e6:.0f} MB)")
    if t:
        print(f"  torch  {t['images_per_second']:8.1f} images/s  ({t['images']} images in {t['seconds']:.3f} s)")
        print(f"  ckpt / torch: {c['images_per_second'] / t['images_per_second']:.2f}x")
    print(f"  CPU per image on one thread: ckpt {cc * 1e3:.2f} ms" +
          (f", torch {tc * 1e3:.2f} ms ({tc / cc:.2f}x)" if tc else ""))
    print(f"  load average {os.getloadavg()[0]:.2f} (other work on the machine lowers the wall-clock rates)")
    json.dump({"ckpt": c, "torch": t, "ckpt_cpu_seconds_per_image": cc, "torch_cpu_seconds_per_image": tc,
               "steal_percent": steal}, sys.stderr)
    sys.stderr.write("\n")


if __name__ == "__main__":
    main()
