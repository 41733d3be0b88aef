"""Checks a `ckpt transplant` output against what a torch user builds by hand.

    python3 audit/transplant_check.py SRC.pth OUT.pth --model resnet34 --num-classes 5 \
        [--in-channels 1 --mode sum|repeat] [--head fc]

Every tensor of OUT must load with torch.load(weights_only=True) and load_state_dict(strict=True)
into torchvision's model; every tensor with the source's key and shape must be the source's bits;
the head must have torchvision's init statistics; an adapted first conv must equal timm's
adapt_input_conv of the source's.
"""
import argparse, math, sys, torch, torchvision
p = argparse.ArgumentParser()
p.add_argument("src"); p.add_argument("out")
p.add_argument("--model", required=True)
p.add_argument("--num-classes", type=int, default=1000)
p.add_argument("--in-channels", type=int, default=3)
p.add_argument("--mode", default="")
p.add_argument("--head", default="fc")
p.add_argument("--first-conv", default="conv1.weight")
a = p.parse_args()
src = torch.load(a.src, weights_only=True)
out = torch.load(a.out, weights_only=True)
m = getattr(torchvision.models, a.model)(num_classes=a.num_classes)
if a.in_channels != 3:
    conv = m.conv1 if hasattr(m, "conv1") else m.features[0]
    new = torch.nn.Conv2d(a.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None)
    if hasattr(m, "conv1"): m.conv1 = new
    else: m.features[0] = new
m.load_state_dict(out, strict=True)
print("load_state_dict(strict=True): ok,", len(out), "tensors")
bad = 0
for k, v in out.items():
    if k.startswith(a.head + "."):
        continue
    if k == a.first_conv and a.in_channels != 3:
        w = src[k].float()
        if a.mode == "sum" or (a.mode == "" and a.in_channels == 1):
            ref = w.sum(dim=1, keepdim=True)
        elif a.mode in ("repeat", ""):
            rep = math.ceil(a.in_channels / 3)
            ref = w.repeat(1, rep, 1, 1)[:, :a.in_channels] * (3 / float(a.in_channels))
        elif a.mode == "mean":
            ref = w.mean(dim=1, keepdim=True).repeat(1, a.in_channels, 1, 1)
        else:
            ref = None
        if ref is not None:
            d = (ref - v).abs().max().item()
            same = torch.equal(ref, v)
            print(f"{k}: vs timm adapt_input_conv ({a.mode or 'default'}): max|d| {d:.3g} bit-identical {same}")
            bad += d > 1e-6
        continue
    if k not in src:
        print("not in source:", k); bad += 1; continue
    if src[k].shape != v.shape or not torch.equal(src[k], v):
        print("differs from source:", k); bad += 1
head = [k for k in out if k.startswith(a.head + ".")]
for k in head:
    t = out[k]
    print(f"head {k}: shape {tuple(t.shape)} mean {t.float().mean():.4g} std {t.float().std():.4g} "
          f"min {t.min():.4g} max {t.max():.4g}")
    if k.endswith("weight") and t.dim() == 2:
        bound = 1 / math.sqrt(t.shape[1])
        print(f"  torchvision Linear init: U(-{bound:.4g}, {bound:.4g}) (std {bound / math.sqrt(3):.4g})")
print("differences:", bad)
sys.exit(1 if bad else 0)
