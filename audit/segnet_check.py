"""The seed's SegNet graft (seeds/000) by hand in torch vs `ckpt transplant VGG --into segnet`.

    python3 audit/segnet_check.py VGG19_BN.pth CKPT_OUT.pth NUM_CLASSES
Loads CKPT_OUT strictly into the seed's SegNet; every encoder tensor must be the bits the seed's
`features[3:7] ... [40:]` slicing gives; the eval-mode outputs of each encoder block match.
"""
import sys, os, torch
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "fixtures", "surgery"))
from seed_segnet import build_seed_segnet
vgg_path, out_path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
ref = build_seed_segnet(n, vgg_path).eval()
out = torch.load(out_path, weights_only=True)
mine = build_seed_segnet(n, vgg_path).eval()
mine.load_state_dict(out, strict=True)
print("load_state_dict(strict=True) into the seed's SegNet: ok,", len(out), "tensors")
refsd = ref.state_dict()
bad = [k for k in refsd if k.startswith("enc") and not torch.equal(refsd[k], out[k])]
print("encoder tensors differing from the seed's slicing:", bad or "none")
x = torch.randn(2, 64, 64, 64)
with torch.no_grad():
    for name in ["enc1", "enc2", "enc3", "enc4", "enc5"]:
        a, b = getattr(ref, name)(x), getattr(mine, name)(x)
        print(f"{name}: max|d| {(a - b).abs().max().item():.3g}")
        x = a
sys.exit(1 if bad else 0)
