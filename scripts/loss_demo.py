#!/usr/bin/env python
"""Print every registered box loss on a few canonical box pairs, next to torchvision's value.

    python scripts/loss_demo.py [--losses iou,giou,diou,ciou] [--dtype float32|float16|bfloat16]

The README's first command runs this until the detector's per-loss mAP comparison replaces it.
"""

from __future__ import annotations

import argparse
import sys

import torch
import torchvision.ops as tvo

from boxloss.boxes import available_box_losses, get_box_loss

CASES = {
    "identical": ([10, 10, 50, 30], [10, 10, 50, 30]),
    "shifted": ([15, 12, 55, 32], [10, 10, 50, 30]),
    "nested": ([20, 15, 40, 25], [10, 10, 50, 30]),
    "disjoint": ([60, 10, 80, 30], [10, 10, 50, 30]),
    "aspect 1:4 vs 4:1": ([25, 0, 35, 40], [10, 15, 50, 25]),
    "0x0 point": ([30, 20, 30, 20], [10, 10, 50, 30]),
    "x2 < x1 (raw head)": ([50, 30, 10, 10], [10, 10, 50, 30]),
}
# Losses that need more than the boxes: the image size of this demo's 100x50 canvas.
EXTRA_ARGS = {"mpdiou": {"img_size": (100, 50)}}
TORCHVISION = {
    "giou": tvo.generalized_box_iou_loss,
    "diou": tvo.distance_box_iou_loss,
    "ciou": tvo.complete_box_iou_loss,
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--losses", default=",".join(available_box_losses()), help="comma-separated loss names")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16", "float64"])
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.losses.split(",") if n.strip()]
    unknown = [n for n in names if n not in available_box_losses()]
    if unknown:
        print(f"error: unknown loss {', '.join(unknown)}; accepted: {', '.join(available_box_losses())}", file=sys.stderr)
        return 2
    dtype = getattr(torch, args.dtype)
    pred = torch.tensor([p for p, _ in CASES.values()], dtype=dtype, requires_grad=True)
    target = torch.tensor([t for _, t in CASES.values()], dtype=dtype)

    print(f"boxloss losses per case ({args.dtype} inputs; torchvision in brackets where it has the loss)\n")
    print("| loss | " + " | ".join(CASES) + " | grads finite |")
    print("|---" * (len(CASES) + 2) + "|")
    for name in names:
        try:
            module = get_box_loss(name, reduction="none", **EXTRA_ARGS.get(name, {}))
        except ValueError as err:
            print(f"| {name} | skipped: {err} |")
            continue
        loss = module(pred, target)
        if loss.dim() == 2:  # element-wise losses (smooth_l1, l1): sum the 4 coordinates per box
            loss = loss.sum(-1)
        (grad,) = torch.autograd.grad(loss.sum(), pred)
        cells = [f"{v:.4f}" for v in loss.tolist()]
        if name in TORCHVISION:
            theirs = TORCHVISION[name](pred.detach().float(), target.float(), reduction="none").tolist()
            cells = [f"{c} [{t:.4f}]" for c, t in zip(cells, theirs)]
        print(f"| {name} | " + " | ".join(cells) + f" | {bool(torch.isfinite(grad).all())} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
