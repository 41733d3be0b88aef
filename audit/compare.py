"""Compares two state dicts value by value: max |a-b| per tensor, bit-identical count.

    python3 audit/compare.py A.pth B.pth [--key model] [--only PREFIX,...] [--atol X]
"""
import sys, argparse, torch
p = argparse.ArgumentParser()
p.add_argument("a"); p.add_argument("b")
p.add_argument("--key", default="")
p.add_argument("--only", default="")
p.add_argument("--atol", type=float, default=0.0)
p.add_argument("--top", type=int, default=8)
a = p.parse_args()
def load(path):
    sd = torch.load(path, weights_only=True, map_location="cpu")
    for k in [x for x in a.key.split(".") if x]:
        sd = sd[k] if k in sd else sd
    return sd
A, B = load(a.a), load(a.b)
only = [s for s in a.only.split(",") if s]
keys = [k for k in A if not only or any(k.startswith(o) for o in only)]
missing = [k for k in keys if k not in B]; extra = [k for k in B if k not in A and (not only or any(k.startswith(o) for o in only))]
rows, same = [], 0
for k in keys:
    if k in missing: continue
    x, y = A[k], B[k]
    if x.shape != y.shape or x.dtype != y.dtype:
        rows.append((float("inf"), k, f"shape/dtype {tuple(x.shape)} {x.dtype} vs {tuple(y.shape)} {y.dtype}")); continue
    if torch.equal(x, y): same += 1; continue
    d = (x.double() - y.double()).abs().max().item()
    rel = d / max(x.double().abs().max().item(), 1e-30)
    rows.append((d, k, f"max|d| {d:.3g} (rel to max|a| {rel:.2g})"))
rows.sort(reverse=True)
print(f"{len(keys)} keys: {same} bit-identical, {len(rows)} differ, {len(missing)} missing in B, {len(extra)} only in B")
for d, k, s in rows[:a.top]:
    print(f"  {k}: {s}")
worst = rows[0][0] if rows else 0.0
print(f"worst {worst:.3g}")
sys.exit(0 if worst <= a.atol and not missing and not extra else 1)
