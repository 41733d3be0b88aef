"""Builds the audit's inputs: "pretrained" torchvision weights (fixed seeds, no network) and a
synthetic ImageFolder full of the odd images users have (JPEG and PNG, odd sizes, grey, RGBA,
palette, EXIF orientation, uppercase extensions, nested class dirs, hidden files).

    python3 audit/make_data.py OUT_DIR
"""
import os, sys, random
import numpy as np
import torch, torchvision
from PIL import Image

out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/audit"
os.makedirs(out, exist_ok=True)

def save_model(name, ctor, **kw):
    path = os.path.join(out, f"{name}-pre.pth")
    if os.path.exists(path):
        return
    torch.manual_seed(0)
    m = ctor(**kw)
    # Make BN running stats non-trivial, as a pretrained net has them.
    g = torch.Generator().manual_seed(1)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
            mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.weight.data.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.bias.data.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
            mod.num_batches_tracked.fill_(1000)
    torch.save(m.state_dict(), path)

tv = torchvision.models
save_model("resnet18", tv.resnet18)
save_model("resnet34", tv.resnet34)
if "--big" in sys.argv:
    # the seed SegNet's source, as fixtures/surgery/seed_segnet.py makes it non-trivial
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "surgery"))
    from seed_segnet import nontrivial_vgg19_bn
    if not os.path.exists(os.path.join(out, "vgg19_bn-pre.pth")):
        torch.save(nontrivial_vgg19_bn(3).state_dict(), os.path.join(out, "vgg19_bn-pre.pth"))

# Start weights with a 3- and a 2-class head made in torch, so both sides start from equal bits.
for classes, seed in ((3, 5), (2, 6)):
    path = os.path.join(out, f"r18_{classes}cls.pth")
    if not os.path.exists(path):
        sd = torch.load(os.path.join(out, "resnet18-pre.pth"), weights_only=True)
        torch.manual_seed(seed)
        head = tv.resnet18(num_classes=classes).fc
        sd["fc.weight"], sd["fc.bias"] = head.weight.detach().clone(), head.bias.detach().clone()
        torch.save(sd, path)

rng = random.Random(0)
nrng = np.random.default_rng(0)

def picture(w, h, cls):
    # Smooth class-dependent pattern plus noise, so the classes are learnable.
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([
        127 + 100 * np.sin(x / (7 + cls * 3) + cls),
        127 + 100 * np.cos(y / (5 + cls * 2)),
        127 + 100 * np.sin((x + y) / (11 + cls)),
    ], axis=-1)
    base += nrng.normal(0, 20, base.shape)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")

def exif_rotated(img, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif

def make_folder(root, classes, per_class, odd=True):
    for ci, cname in enumerate(classes):
        d = os.path.join(root, cname)
        os.makedirs(d, exist_ok=True)
        for i in range(per_class):
            w, h = rng.choice([(224, 224), (257, 199), (300, 181), (97, 143), (640, 480), (33, 50)])
            img = picture(w, h, ci)
            kind = i % 8 if odd else 0
            if kind == 0:
                img.save(os.path.join(d, f"img{i:03d}.jpg"), quality=90)
            elif kind == 1:
                img.save(os.path.join(d, f"img{i:03d}.png"))
            elif kind == 2:
                img.convert("L").save(os.path.join(d, f"img{i:03d}_grey.jpg"), quality=85)
            elif kind == 3:
                a = img.convert("RGBA"); a.putalpha(Image.fromarray((nrng.random((h, w)) * 255).astype(np.uint8)))
                a.save(os.path.join(d, f"img{i:03d}_rgba.png"))
            elif kind == 4:
                img.convert("P", palette=Image.ADAPTIVE, colors=17).save(os.path.join(d, f"img{i:03d}_pal.png"))
            elif kind == 5:
                img.save(os.path.join(d, f"img{i:03d}_exif6.jpg"), quality=92, exif=exif_rotated(img, 6))
            elif kind == 6:
                img.save(os.path.join(d, f"IMG{i:03d}.JPG"), quality=90)
            else:
                img.convert("L").save(os.path.join(d, f"img{i:03d}_grey.PNG"))
        if odd:
            os.makedirs(os.path.join(d, "nested"), exist_ok=True)
            picture(120, 90, ci).save(os.path.join(d, "nested", "deep.jpg"))
            picture(50, 50, ci).save(os.path.join(d, ".hidden.jpg"))
            open(os.path.join(d, "notes.txt"), "w").write("not an image\n")

# Odd folder: three classes (names sort differently by case), 10 images each.
classes = ["Cat", "bird", "dog"]
make_folder(os.path.join(out, "odd", "train"), classes, 10)
make_folder(os.path.join(out, "odd", "val"), classes, 4)
os.makedirs(os.path.join(out, "odd", ".git"), exist_ok=True)
# Plain folder for timing: 64 JPEGs 224x224 in 2 classes, plus val.
make_folder(os.path.join(out, "plain", "train"), ["a", "b"], 32, odd=False)
make_folder(os.path.join(out, "plain", "val"), ["a", "b"], 8, odd=False)
print("ok", out)
