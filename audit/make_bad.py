"""Bad-input folders for the audit (each a copy of a small good folder with one defect).

    python3 audit/make_bad.py OUT_DIR
"""
import os, sys, shutil
import numpy as np
from PIL import Image
out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/audit/bad"
rng = np.random.default_rng(0)

def good(root, classes=("a", "b"), n=4, size=(64, 48)):
    for c in classes:
        os.makedirs(os.path.join(root, c), exist_ok=True)
        for i in range(n):
            arr = (rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)
            Image.fromarray(arr).save(os.path.join(root, c, f"{i}.jpg"))

shutil.rmtree(out, ignore_errors=True)
good(os.path.join(out, "emptyclass")); os.makedirs(os.path.join(out, "emptyclass", "c"))
good(os.path.join(out, "oneclass"), classes=("a",))
good(os.path.join(out, "corrupt")); open(os.path.join(out, "corrupt", "a", "bad.jpg"), "wb").write(os.urandom(500))
good(os.path.join(out, "truncated"))
data = open(os.path.join(out, "truncated", "a", "0.jpg"), "rb").read()
open(os.path.join(out, "truncated", "b", "trunc.jpg"), "wb").write(data[: len(data) // 2])
good(os.path.join(out, "truncpng"))
Image.fromarray((rng.random((40, 40, 3)) * 255).astype(np.uint8)).save(os.path.join(out, "truncpng", "b", "t.png"))
d = open(os.path.join(out, "truncpng", "b", "t.png"), "rb").read()
open(os.path.join(out, "truncpng", "b", "t.png"), "wb").write(d[: len(d) * 2 // 3])
good(os.path.join(out, "zerobyte")); open(os.path.join(out, "zerobyte", "b", "empty.png"), "wb").close()
good(os.path.join(out, "unreadable")); p = os.path.join(out, "unreadable", "a", "noperm.jpg")
shutil.copy(os.path.join(out, "unreadable", "a", "0.jpg"), p); os.chmod(p, 0)
good(os.path.join(out, "threeclass"), classes=("a", "b", "c"))
good(os.path.join(out, "batch1"), classes=("a", "b"), n=1)   # 2 images: batch 1, BN in training
# 10,000 tiny images in 2 classes
tiny = os.path.join(out, "tiny10k")
for c in ("a", "b"):
    os.makedirs(os.path.join(tiny, c), exist_ok=True)
    arr = (rng.random((8, 8, 3)) * 255).astype(np.uint8)
    Image.fromarray(arr).save(os.path.join(tiny, c, "0.png"))
    src = open(os.path.join(tiny, c, "0.png"), "rb").read()
    for i in range(1, 5000):
        open(os.path.join(tiny, c, f"{i}.png"), "wb").write(src)
print("ok", out)
