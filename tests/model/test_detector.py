"""The detector: loss dict, predictions, static assignment, loss choice, NMS, backbones."""

import math

import pytest
import torch
from torchvision.ops import batched_nms

from boxloss.boxes import get_box_loss
from boxloss.model import (STRIDES, assign_targets, build_backbone, build_detector, centerness, decode, diou_nms,
                           make_points)
from boxloss.model.assign import scale_bounds

SMALL = {"widths": [8, 8, 16, 16, 16], "depths": [0, 0, 1, 0, 0], "fpn_channels": 16, "head_convs": 1, "norm_groups": 4}


def _batch(size=64):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8, generator=g)
    targets = [
        {"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0], [20.0, 20.0, 60.0, 50.0]]), "labels": torch.tensor([0, 2])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},  # a negative image
    ]
    return images, targets


def _model(box_loss="ciou", **kw):
    torch.manual_seed(0)
    return build_detector({**SMALL, **kw}, num_classes=3, loss_cfg={"box_loss": box_loss})


def test_losses_are_finite_scalars_and_backpropagate():
    model = _model()
    images, targets = _batch()
    losses = model(images, targets)
    assert set(losses) == {"loss", "loss_cls", "loss_box", "loss_ctr"}
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    assert torch.allclose(losses["loss"], losses["loss_cls"] + losses["loss_box"] + losses["loss_ctr"])
    losses["loss"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


def test_no_ground_truth_gives_zero_box_loss():
    model = _model()
    images, targets = _batch()
    losses = model(images[1:], targets[1:])
    assert losses["loss_box"].item() == 0.0 and losses["loss_ctr"].item() == 0.0
    assert losses["loss_cls"].item() > 0


def test_predict_format():
    model = _model(max_detections=7, score_thresh=0.0).eval()
    images, _ = _batch()
    dets = model.predict(images)
    assert len(dets) == 2
    for d in dets:
        assert d["boxes"].shape == (7, 4) and d["scores"].shape == (7,) and d["labels"].dtype == torch.int64
        assert (d["boxes"] >= 0).all() and (d["boxes"] <= 64).all()
        assert (d["boxes"][:, 2:] >= d["boxes"][:, :2]).all()
        assert (d["scores"][:-1] >= d["scores"][1:]).all()
    # uint8 and float 0..255 inputs are the same thing (normalisation is inside the model)
    again = model.predict(images.float())
    assert torch.allclose(dets[0]["scores"], again[0]["scores"])


def test_assignment_centre_sampling_scale_ranges_smallest_wins():
    sizes = [(8, 8), (4, 4), (2, 2)]  # a 64 x 64 input
    points, strides = make_points(sizes, STRIDES)
    lo, hi = scale_bounds(sizes, [64, 128])
    big = [0.0, 0.0, 64.0, 64.0]  # max(l, t, r, b) ~ 60 at its centre: a P3 object
    small = [24.0, 24.0, 40.0, 40.0]
    matched, ltrb = assign_targets(points, strides, lo, hi, torch.tensor([big, small]), radius=1.5)
    p3 = slice(0, 64)
    # The four P3 cells around the centre (28, 28)...(36, 36) lie in both boxes: the smaller wins.
    centre = [i for i in range(64) if abs(points[i, 0] - 32) < 8 and abs(points[i, 1] - 32) < 8]
    assert len(centre) == 4 and (matched[centre] == 1).all()
    # Centre sampling: no positive further than 1.5 strides from a box centre.
    pos = matched[p3] >= 0
    assert ((points[p3][pos] - 32).abs() < 12).all()
    # Coarser levels get nothing: every object is under 64 px of reach.
    assert (matched[64:] == -1).all()
    i = centre[0]
    x, y = points[i].tolist()
    assert ltrb[i].tolist() == [x - 24, y - 24, 40 - x, 40 - y]
    assert centerness(torch.tensor([[2.0, 2.0, 2.0, 2.0]])).item() == 1.0


def test_assignment_is_identical_whatever_the_box_loss():
    images, targets = _batch()
    positives = []
    for name in ("smooth_l1", "giou", "ciou"):
        model = _model(name)
        calls = []
        original = assign_targets

        def spy(*args, **kw):
            out = original(*args, **kw)
            calls.append(out[0].clone())
            return out

        import boxloss.model.detector as det

        det.assign_targets, saved = spy, det.assign_targets
        try:
            model(images, targets)
        finally:
            det.assign_targets = saved
        positives.append(torch.stack(calls))
    assert all(torch.equal(positives[0], p) for p in positives[1:])


@pytest.mark.parametrize("name", ["smooth_l1", "l1", "giou", "ciou"])
def test_box_loss_is_the_registry_loss_on_the_documented_coordinates(name):
    model = _model(name)
    images, targets = _batch()
    outputs, sizes = model._head(images)
    losses = model.compute_losses(outputs, sizes, targets)
    # Recompute by hand: positives of image 0 (image 1 has none).
    points, strides = make_points(sizes, STRIDES)
    lo, hi = scale_bounds(sizes, [64, 128])
    matched, ltrb = assign_targets(points, strides, lo, hi, targets[0]["boxes"])
    pos = matched >= 0
    dist = torch.cat([o[1] for o in outputs], dim=1)[0][pos]
    fn = get_box_loss(name)
    if name in ("smooth_l1", "l1"):
        expected = fn(dist, ltrb[pos] / strides[pos, None], avg_factor=pos.sum())
    else:
        expected = fn(decode(points[pos], strides[pos], dist), targets[0]["boxes"][matched[pos]], avg_factor=pos.sum())
    assert torch.allclose(losses["loss_box"], expected, rtol=1e-5)


def test_loss_choice_changes_the_box_loss_only():
    images, targets = _batch()
    results = {name: _model(name)(images, targets) for name in ("smooth_l1", "iou", "giou", "ciou")}
    box = {name: r["loss_box"].item() for name, r in results.items()}
    assert len(set(box.values())) == 4, box
    cls = {r["loss_cls"].item() for r in results.values()}
    assert len(cls) == 1  # same weights (same seed), same positives: the same classification loss


def test_loss_weight_scales_the_box_loss():
    images, targets = _batch()
    base = _model("giou")(images, targets)["loss_box"]
    torch.manual_seed(0)
    model = build_detector(SMALL, 3, {"box_loss": "giou", "weights": {"giou": 2.5}})
    assert torch.allclose(model(images, targets)["loss_box"], 2.5 * base)


def test_bce_and_iou_quality_options():
    images, targets = _batch()
    torch.manual_seed(0)
    model = build_detector({**SMALL, "quality": "iou"}, 3, {"box_loss": "giou", "cls_loss": "bce"})
    losses = model(images, targets)
    assert all(torch.isfinite(v) for v in losses.values())


def test_unknown_names_are_clear_errors():
    with pytest.raises(ValueError, match="unknown box loss 'nope'; accepted: .*ciou"):
        build_detector(SMALL, 3, {"box_loss": "nope"})
    with pytest.raises(ValueError, match="accepted: tiny, resnet18"):
        build_detector({**SMALL, "backbone": "vgg"}, 3)
    with pytest.raises(ValueError, match="unknown model/loss key"):
        build_detector({**SMALL, "colour": 1}, 3)


def test_diou_nms_keeps_overlapping_boxes_with_distant_centres():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 16.0], [50.0, 50.0, 60.0, 60.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    labels = torch.zeros(3, dtype=torch.long)
    # IoU(0, 1) = 100 / 160 = 0.625; DIoU = 0.625 - 9 / 356 = 0.5997.
    assert batched_nms(boxes, scores, labels, 0.61).tolist() == [0, 2]
    assert diou_nms(boxes, scores, labels, 0.61).tolist() == [0, 1, 2]
    assert diou_nms(boxes, scores, labels, 0.59).tolist() == [0, 2]
    # Different classes never suppress each other.
    assert diou_nms(boxes, scores, torch.tensor([0, 1, 0]), 0.1).tolist() == [0, 1, 2]


def test_diou_nms_option_in_predict():
    model = _model(nms="diou", score_thresh=0.0).eval()
    dets = model.predict(_batch()[0])
    assert all(len(d["boxes"]) <= 100 for d in dets)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_torchvision_backbones_give_strides_8_16_32(name):
    backbone = build_backbone({"backbone": name})
    feats = backbone(torch.zeros(1, 3, 64, 64))
    assert [f.shape[-1] for f in feats] == [8, 4, 2]
    assert [f.shape[1] for f in feats] == backbone.out_channels


def test_backbone_weights_from_a_local_file(tmp_path):
    import torchvision

    torch.manual_seed(1)
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    backbone = build_backbone({"backbone": "resnet18", "backbone_weights": str(path)})
    assert torch.equal(backbone.body.conv1.weight, reference.conv1.weight)
    with pytest.raises(FileNotFoundError, match="backbone weights file not found"):
        build_backbone({"backbone": "resnet18", "backbone_weights": str(tmp_path / "missing.pth")})
