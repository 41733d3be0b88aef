"""The torch side of `ckpt finetune --no-augment --no-shuffle`: ImageFolder (hidden entries left
out, as ckpt does by default), Resize(S)+CenterCrop(S)+ToTensor+Normalize, SGD with momentum,
cross-entropy, model.train(); writes the state dict after each epoch and prints the losses.

    python3 audit/finetune_torch.py --model resnet18 --weights W.pth --data DIR --num-classes 3 \
        --epochs 2 --batch 32 --lr 0.001 [--train fc,layer4] [--threads 2] -o OUT_PREFIX
"""
import argparse, json, os, time
import torch, torchvision
from torchvision import transforms as T
from torchvision.datasets import ImageFolder

p = argparse.ArgumentParser()
p.add_argument("--model", default="resnet18")
p.add_argument("--weights", required=True)
p.add_argument("--data", required=True)
p.add_argument("--num-classes", type=int, required=True)
p.add_argument("--epochs", type=int, default=1)
p.add_argument("--batch", type=int, default=32)
p.add_argument("--lr", type=float, default=0.001)
p.add_argument("--momentum", type=float, default=0.9)
p.add_argument("--weight-decay", type=float, default=0.0)
p.add_argument("--size", type=int, default=224)
p.add_argument("--train", default="", help="comma-separated module prefixes that train (default all)")
p.add_argument("--threads", type=int, default=0)
p.add_argument("--optimizer", default="sgd", choices=["sgd", "adamw"])
p.add_argument("--group-lr", default="", help="NAME=LR,... parameter groups of their own (as ckpt's --group-lr)")
p.add_argument("--double", action="store_true", help="float64 reference")
p.add_argument("--frozen-bn-eval", action="store_true", help="batch norms whose parameters are all frozen run in eval mode")
p.add_argument("-o", "--out", required=True)
a = p.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)
t0 = time.time()

def not_hidden(path):
    rel = os.path.relpath(path, root)
    return not any(part.startswith(".") for part in rel.split(os.sep)) and \
        path.lower().endswith((".jpg", ".jpeg", ".png"))

tf = T.Compose([T.Resize(a.size), T.CenterCrop(a.size), T.ToTensor(),
                T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
root = os.path.join(a.data, "train") if os.path.isdir(os.path.join(a.data, "train")) else a.data
ds = ImageFolder(root, transform=tf, is_valid_file=not_hidden)
dl = torch.utils.data.DataLoader(ds, batch_size=a.batch, shuffle=False, num_workers=0)

model = getattr(torchvision.models, a.model)(num_classes=a.num_classes)
sd = torch.load(a.weights, weights_only=True)
sd = sd.get("model", sd) if isinstance(sd, dict) and "model" in sd else sd
model.load_state_dict(sd, strict=True)
if a.double:
    model = model.double()
prefixes = [s for s in a.train.split(",") if s]
params = []
for name, prm in model.named_parameters():
    train = not prefixes or any(name == q or name.startswith(q + ".") for q in prefixes)
    prm.requires_grad_(train)
    if train:
        params.append(prm)
groups = {}
for item in [x for x in a.group_lr.split(",") if x]:
    name, lr = item.split("="); groups[name] = {"params": [], "lr": float(lr)}
rest = []
for name, prm in model.named_parameters():
    if not prm.requires_grad: continue
    owner = next((g for g in groups if name == g or name.startswith(g + ".")), None)
    (groups[owner]["params"] if owner else rest).append(prm)
param_groups = [{"params": rest}] + [g for g in groups.values() if g["params"]]
if a.optimizer == "sgd":
    opt = torch.optim.SGD(param_groups, lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay)
else:
    opt = torch.optim.AdamW(param_groups, lr=a.lr, weight_decay=a.weight_decay)
lossf = torch.nn.CrossEntropyLoss()
report = {"classes": ds.classes, "samples": [(os.path.relpath(s, root), c) for s, c in ds.samples], "epochs": []}
for epoch in range(a.epochs):
    model.train()
    if a.frozen_bn_eval:
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d) and not any(q.requires_grad for q in mod.parameters()):
                mod.eval()
    losses, n = 0.0, 0
    step_losses = []
    for x, y in dl:
        if a.double:
            x = x.double()
        opt.zero_grad()
        loss = lossf(model(x), y)
        loss.backward()
        opt.step()
        step_losses.append(loss.item())
        losses += loss.item() * len(y); n += len(y)
    report["epochs"].append({"loss": losses / n, "steps": step_losses})
    torch.save(model.state_dict(), f"{a.out}.epoch{epoch + 1}.pth")
report["seconds"] = time.time() - t0
print(json.dumps(report))
