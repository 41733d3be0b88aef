#!/bin/sh
# Wall-clock of a short fine-tune, ckpt vs the equivalent torch script, alternating, best of N.
#   audit/time_finetune.sh CKPT_BINARY DATA(64 images in 2 class folders) WEIGHTS(resnet18, 2 classes) [ROUNDS]
# Both: resnet18, 224x224, 2 epochs, batch 32, SGD lr 0.001 momentum 0.9, no augmentation, no
# shuffle, no validation, 2 compute threads; both save the state dict after each epoch.
set -e
C=$1; DATA=$2; W=$3; N=${4:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$(mktemp -d)
for i in $(seq "$N"); do
  s=$(date +%s.%N)
  "$C" finetune resnet18 --weights "$W" --data "$DATA" --num-classes 2 --epochs 2 --batch 32 \
      --no-augment --no-shuffle --workers 2 -o "$OUT/ck.pth" --force > /dev/null 2>&1
  e=$(date +%s.%N); echo "ckpt  round $i: $(echo "$e - $s" | bc) s"
  s=$(date +%s.%N)
  python3 "$HERE/finetune_torch.py" --weights "$W" --data "$DATA" --num-classes 2 --epochs 2 \
      --batch 32 --threads 2 -o "$OUT/torch" > /dev/null
  e=$(date +%s.%N); echo "torch round $i: $(echo "$e - $s" | bc) s"
done
rm -rf "$OUT"
