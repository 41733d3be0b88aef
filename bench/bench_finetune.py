#!/usr/bin/env python3
"""Fine-tuning benchmark (issue 9): whole epochs of `ckpt finetune` against the torch tutorial's loop.

Data: a folder of JPEGs of 500x375 (bench_data's synthetic photos), --train images in train/ and
--val in val/, 4 classes, written once to --dir. Weights: `ckpt init resnet18` (a 1000-class head,
replaced by a 4-class one on both sides).

Two cases, each for --epochs epochs at batch 32, 224x224, Resize(256) + CenterCrop(224) for training
and validation alike (no augmentation, so both engines see the same pixels):
  feature-extract  ckpt: `ckpt finetune resnet18 --mode feature-extract --no-augment` (the frozen
                   network runs once per image; later epochs train fc on cached features)
                   torch: the transfer-learning tutorial's "ConvNet as fixed feature extractor":
                   requires_grad=False on the backbone, SGD on fc, the whole network forward on every
                   batch of every epoch, DataLoader(num_workers=2), validation under no_grad.
  finetune         (with --whole-epoch) everything trains; the same loop in both, so the per-step
                   ratio of the training engine shows whether data loading loses it.
Each engine's time per epoch comes from its own clock (ckpt's --json metrics: training, validation
and caching; torch: time.perf_counter around the same parts), and the whole command's wall time
(process start-up, weight loading, and for ckpt the checkpoints it writes every epoch) is measured
from outside. Engines
alternate for --rounds rounds; each engine's best round counts. Steal time seen is printed.
"""
import argparse, json, os, subprocess, sys, tempfile, time

from bench_data import make_folder
from bench_forward import cpu_times

HERE = os.path.dirname(os.path.abspath(__file__))

TORCH_LOOP = r'''
import json, sys, time, torch, torchvision
from torchvision import transforms
from torchvision.datasets import ImageFolder
args = json.loads(sys.argv[1])
torch.manual_seed(0)
model = torchvision.models.resnet18(num_classes=1000)
state = torch.load(args["weights"], weights_only=True)
model.load_state_dict(state)
model.fc = torch.nn.Linear(512, 4)
if args["mode"] == "feature-extract":
    for p in model.parameters():
        p.requires_grad = False
    for p in model.fc.parameters():
        p.requires_grad = True
    params = model.fc.parameters()
else:
    params = model.parameters()
optimizer = torch.optim.SGD(params, lr=0.001, momentum=0.9)
criterion = torch.nn.CrossEntropyLoss()
tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                         transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
loaders = {phase: torch.utils.data.DataLoader(ImageFolder(f'{args["data"]}/{phase}', tf), batch_size=32,
                                              shuffle=(phase == "train"), num_workers=2)
           for phase in ("train", "val")}
seconds = []
for epoch in range(args["epochs"]):
    start = time.perf_counter()
    for phase in ("train", "val"):
        model.train() if phase == "train" else model.eval()
        correct = 0
        for x, y in loaders[phase]:
            optimizer.zero_grad()
            with torch.set_grad_enabled(phase == "train"):
                out = model(x)
                loss = criterion(out, y)
                if phase == "train":
                    loss.backward()
                    optimizer.step()
            correct += (out.argmax(1) == y).sum().item()
    seconds.append(time.perf_counter() - start)
print(json.dumps({"seconds": seconds}))
'''


def run_ckpt(a, mode, out_dir):
    cmd = [a.ckpt, "finetune", "resnet18", "--weights", a.weights, "--data", a.dir, "--num-classes", "4",
           "--mode", mode, "--no-augment", "--epochs", str(a.epochs), "--batch", "32", "--lr", "0.001",
           "--image-size", "224", "--json", "--force", "-o", os.path.join(out_dir, "out.pth")]
    start = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if r.returncode != 0:
        sys.exit(f"ckpt finetune failed: {r.stderr.strip()}")
    report = json.loads(r.stdout)
    return [m["seconds"] for m in report["metrics"]], wall


def run_torch(a, mode):
    args = json.dumps({"weights": a.weights, "data": a.dir, "epochs": a.epochs, "mode": mode})
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", TORCH_LOOP, args], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if r.returncode != 0:
        sys.exit(f"torch loop failed: {r.stderr.strip()[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])["seconds"], wall


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default=os.path.join(HERE, "..", ".build", "release", "ckpt"))
    p.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "ckpt-bench-finetune"))
    p.add_argument("--train", type=int, default=240)
    p.add_argument("--val", type=int, default=60)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--whole-epoch", action="store_true", help="also time finetune mode (everything trains)")
    a = p.parse_args()
    make_folder(os.path.join(a.dir, "train"), a.train, 500, 375)
    make_folder(os.path.join(a.dir, "val"), a.val, 500, 375)
    a.weights = os.path.join(a.dir, "resnet18.pth")
    if not os.path.exists(a.weights):
        subprocess.run([a.ckpt, "init", "resnet18", "-o", a.weights], check=True, capture_output=True)
    steal0, total0 = cpu_times()
    print(f"resnet18, {a.train} training + {a.val} validation JPEGs 500x375, 4 classes, batch 32, 224x224, "
          f"{a.epochs} epochs, {a.rounds} rounds (best round per engine); load average {os.getloadavg()[0]:.2f}")
    results = {}
    cases = ["feature-extract"] + (["finetune"] if a.whole_epoch else [])
    with tempfile.TemporaryDirectory() as out_dir:
        for mode in cases:
            best = {"ckpt": None, "torch": None}
            for _ in range(a.rounds):
                for engine in ("ckpt", "torch"):
                    s = run_ckpt(a, mode, out_dir) if engine == "ckpt" else run_torch(a, mode)
                    if best[engine] is None or s[1] < best[engine][1]:
                        best[engine] = s
            (c, cw), (t, tw) = best["ckpt"], best["torch"]
            later = lambda s: sum(s[1:]) / max(1, len(s) - 1)
            row = {"ckpt_epoch_seconds": c, "torch_epoch_seconds": t,
                   "ckpt_command_seconds": cw, "torch_script_seconds": tw, "command_ratio": tw / cw,
                   "run_ratio": sum(t) / sum(c), "first_epoch_ratio": t[0] / c[0],
                   "later_epoch_ratio": later(t) / later(c) if len(c) > 1 else None}
            results[mode] = row
            print(f"\n{mode}: seconds per epoch")
            print("  ckpt  " + " ".join(f"{x:7.2f}" for x in c) + f"   total {sum(c):7.2f}")
            print("  torch " + " ".join(f"{x:7.2f}" for x in t) + f"   total {sum(t):7.2f}")
            print(f"  whole command (start-up, loading, checkpoints written each epoch): ckpt {cw:.2f} s, "
                  f"torch script {tw:.2f} s: {tw / cw:.2f}x")
            print(f"  epochs alone: ckpt {row['run_ratio']:.2f}x torch's speed; first epoch {row['first_epoch_ratio']:.2f}x"
                  + (f", later epochs {row['later_epoch_ratio']:.1f}x" if row["later_epoch_ratio"] else ""))
    steal1, total1 = cpu_times()
    steal = 100.0 * (steal1 - steal0) / max(1, total1 - total0)
    print(f"\nsteal during the run: {steal:.1f}%; load average {os.getloadavg()[0]:.2f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
