#!/usr/bin/env python
"""Time Ultralytics' detection criterion with its own CIoU vs ours (box_loss="ciou"), measured in the same run.

    YOLO_OFFLINE=1 python scripts/bench_yolo_loss.py --model yolo11n.yaml --imgsz 640 --batch 8 --threads 2

One forward of the model (random init, random images) gives the head outputs; the targets are random
valid boxes (--boxes per image, 8 to 40 % of the image side, nc=80). Then, interleaving the two
(each goes first in every other round) `--repeats` times after `--warmup` calls each, it times:

- criterion: forward + backward of the whole criterion (`v8DetectionLoss.loss`: assignment, BCE, box
  term, DFL) with respect to the head outputs;
- box term: forward + backward of the replaced term alone on the same foreground boxes (Ultralytics'
  `bbox_iou(..., CIoU=True)` vs our `ciou_loss`, both with the same per-box weights, random here as
  the criterion's target scores would be).

Prints the median times and the ratios ours / Ultralytics (< 1: ours is faster), the number of
foreground anchors, the torch threads, whether our fused CPU kernels ran, and the CPU.
Needs the optional extra: pip install -c constraints.txt -e ".[ultralytics]".
"""

import argparse
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("YOLO_OFFLINE", "1")

import boxloss.cli  # noqa: F401,E402 -- sets OMP_WAIT_POLICY=PASSIVE before torch loads OpenMP
import torch  # noqa: E402


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _targets(batch: int, per_image: int, nc: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    n = batch * per_image
    wh = torch.rand(n, 2, generator=g) * 0.32 + 0.08
    xy = wh / 2 + torch.rand(n, 2, generator=g) * (1 - wh)  # boxes inside the image
    return {"batch_idx": torch.arange(batch).repeat_interleave(per_image).float(),
            "cls": torch.randint(0, nc, (n, 1), generator=g).float(), "bboxes": torch.cat([xy, wh], 1)}


def _time(fn, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="yolo11n.yaml")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--boxes", type=int, default=8, help="ground-truth boxes per image")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    try:
        from ultralytics.cfg import DEFAULT_CFG, get_cfg
        from ultralytics.utils.metrics import bbox_iou

        from boxloss.boxes import ciou_loss, cpu_kernels_available
        from boxloss.integrations.ultralytics import BoxlossDetectionModel
    except ImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = BoxlossDetectionModel(args.model, nc=80, verbose=False, box_loss="ciou")
    model.args = get_cfg(DEFAULT_CFG, {"imgsz": args.imgsz})
    model.train()
    with torch.no_grad():
        preds = model(torch.rand(args.batch, 3, args.imgsz, args.imgsz))
    if "one2many" in preds:
        preds = preds["one2many"]
    batch = _targets(args.batch, args.boxes, 80, seed=1)
    ours = model.init_criterion()
    ref = super(BoxlossDetectionModel, model).init_criterion()  # DetectionModel's: Ultralytics' own loss
    if hasattr(ours, "one2many"):
        ours, ref = ours.one2many, ref.one2many

    def criterion_step(criterion):
        leaf = {k: preds[k].detach().requires_grad_(True) for k in ("boxes", "scores")}
        loss, _ = criterion.loss({**preds, **leaf}, batch)
        loss.sum().backward()

    # the replaced term alone, on the foreground of one assignment (pixels; both losses are scale-invariant)
    (fg_mask, _, target_bboxes, anchor_points, stride), _, _ = ref.get_assigned_targets_and_loss(preds, batch)
    pred_bboxes = ref.bbox_decode(anchor_points, preds["boxes"].permute(0, 2, 1)) * stride
    fg = fg_mask.nonzero(as_tuple=True)
    p_fg, t_fg = pred_bboxes[fg].detach(), target_bboxes[fg]
    w = torch.rand(len(p_fg), generator=torch.Generator().manual_seed(2))

    def ref_term():
        p = p_fg.clone().requires_grad_(True)
        ((1.0 - bbox_iou(p, t_fg, xywh=False, CIoU=True)) * w[:, None]).sum().div(w.sum()).backward()

    def our_term():
        p = p_fg.clone().requires_grad_(True)
        ciou_loss(p, t_fg, weight=w, avg_factor=w.sum()).backward()

    times = {name: [] for name in ("crit_ref", "crit_ours", "term_ref", "term_ours")}
    steps = {"crit_ref": lambda: criterion_step(ref), "crit_ours": lambda: criterion_step(ours),
             "term_ref": ref_term, "term_ours": our_term}
    for rep in range(args.repeats):  # interleaved, first one then the other first: drift hits both alike
        for key in (list(steps) if rep % 2 == 0 else ["crit_ours", "crit_ref", "term_ours", "term_ref"]):
            times[key].append(_time(steps[key], args.warmup if rep < 2 else 0))
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    print(f"model {args.model}, imgsz {args.imgsz}, batch {args.batch}, {args.boxes} boxes/image, "
          f"{len(p_fg)} foreground anchors, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"fused CPU kernels: {cpu_kernels_available()}, CPU: {_cpu_name()}")
    print(f"{'median ms (fwd+bwd)':<22}{'Ultralytics CIoU':>18}{'boxloss ciou':>14}{'ours / theirs':>15}")
    for label, key in (("criterion", "crit"), ("box term alone", "term")):
        a, b = med[f"{key}_ref"], med[f"{key}_ours"]
        print(f"{label:<22}{a:>18.3f}{b:>14.3f}{b / a:>15.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
