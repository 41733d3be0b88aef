"""The torch side of `ckpt predict`: Resize(round(S*256/224)) + CenterCrop(S) + ToTensor +
Normalize, model.eval(), softmax; compares with `ckpt predict --json` output.

    python3 audit/predict_torch.py --model resnet18 --weights W.pth --num-classes 3 CKPT.json
"""
import argparse, json, sys, torch, torchvision
from PIL import Image
from torchvision import transforms as T
p = argparse.ArgumentParser()
p.add_argument("--model", default="resnet18"); p.add_argument("--weights", required=True)
p.add_argument("--num-classes", type=int, required=True); p.add_argument("--size", type=int, default=224)
p.add_argument("ckpt_json")
a = p.parse_args()
m = getattr(torchvision.models, a.model)(num_classes=a.num_classes)
m.load_state_dict(torch.load(a.weights, weights_only=True), strict=True); m.eval()
tf = T.Compose([T.Resize(round(a.size * 256 / 224)), T.CenterCrop(a.size), T.ToTensor(),
                T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
ck = json.load(open(a.ckpt_json))
worst, order_bad = 0.0, 0
for item in ck["images"]:
    x = tf(Image.open(item["image"]).convert("RGB")).unsqueeze(0)
    with torch.no_grad():
        prob = torch.softmax(m(x), 1)[0]
    top = torch.topk(prob, len(item["predictions"]))
    got = [q["index"] for q in item["predictions"]]
    if got != top.indices.tolist():
        order_bad += 1; print("order differs:", item["image"], got, top.indices.tolist())
    for q in item["predictions"]:
        worst = max(worst, abs(q["probability"] - prob[q["index"]].item()))
print(f"{len(ck['images'])} images; top-k order differs on {order_bad}; worst |p_ckpt - p_torch| {worst:.3g}")
sys.exit(1 if order_bad or worst > 1e-5 else 0)
