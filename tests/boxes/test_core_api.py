"""Reductions, weights, avg_factor, modules, the registry, argument errors, and the import contract."""

import subprocess
import sys

import pytest
import torch

from boxloss.boxes import (
    LossModule,
    SigmoidFocalLoss,
    available_box_losses,
    box_convert,
    box_iou,
    ciou_loss,
    get_box_loss,
    giou_loss,
    iou_loss,
    sigmoid_focal_loss,
    smooth_l1_loss,
)

from box_cases import IOU_FAMILY, overlapping_pairs

CORE_NAMES = ["smooth_l1", "l1", "iou", "giou", "diou", "ciou"]


# --- reductions, weight, avg_factor ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(IOU_FAMILY))
def test_reductions_weight_and_avg_factor(name):
    fn = IOU_FAMILY[name]
    pred, target = overlapping_pairs(30)
    pred, target = pred.view(5, 6, 4), target.view(5, 6, 4)  # batch dims
    none = fn(pred, target, reduction="none")
    assert none.shape == (5, 6)
    torch.testing.assert_close(fn(pred, target, reduction="sum"), none.sum())
    torch.testing.assert_close(fn(pred, target), none.mean())
    w = torch.rand(5, 6, dtype=torch.float64)
    torch.testing.assert_close(fn(pred, target, weight=w, reduction="none"), none * w)
    torch.testing.assert_close(fn(pred, target, weight=w, avg_factor=7.0), (none * w).sum() / 7)
    torch.testing.assert_close(fn(pred, target, weight=w, avg_factor=torch.tensor(7.0)), (none * w).sum() / 7)
    # Per-coordinate weights are averaged over the 4 coordinates (mmdetection's convention).
    w4 = torch.rand(5, 6, 4, dtype=torch.float64)
    torch.testing.assert_close(fn(pred, target, weight=w4, reduction="sum"), (none * w4.mean(-1)).sum())
    # avg_factor with "none" is ignored (mmdetection's convention).
    torch.testing.assert_close(fn(pred, target, reduction="none", avg_factor=3.0), none)


def test_smooth_l1_weights():
    pred, target = overlapping_pairs(10)
    none = smooth_l1_loss(pred, target, reduction="none")
    assert none.shape == (10, 4)
    w_box = torch.rand(10, dtype=torch.float64)
    torch.testing.assert_close(smooth_l1_loss(pred, target, weight=w_box, reduction="none"), none * w_box[:, None])
    w4 = torch.rand(10, 4, dtype=torch.float64)
    torch.testing.assert_close(smooth_l1_loss(pred, target, weight=w4, avg_factor=2.0), (none * w4).sum() / 2)


def test_focal_weights_class_shaped_or_per_anchor():
    logits, targets = torch.randn(7, 3), (torch.rand(7, 3) > 0.5).float()
    none = sigmoid_focal_loss(logits, targets, reduction="none")
    w = torch.rand(7)
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets, weight=w, reduction="none"), none * w[:, None])
    wc = torch.rand(7, 3)
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets, weight=wc, reduction="sum"), (none * wc).sum())


def test_broadcasting_pred_and_target():
    pred, target = overlapping_pairs(6)
    one_target = target[:1]
    torch.testing.assert_close(giou_loss(pred, one_target, reduction="none"),
                               giou_loss(pred, one_target.expand_as(pred), reduction="none"))


# --- modules and registry --------------------------------------------------------------------------------


def test_registry_lists_core_losses_and_builds_modules():
    names = available_box_losses()
    assert set(CORE_NAMES) <= set(names)
    pred, target = overlapping_pairs(20)
    for name in CORE_NAMES:
        module = get_box_loss(name)
        assert isinstance(module, torch.nn.Module)
        assert torch.isfinite(module(pred, target))


def test_module_loss_weight_and_kwargs():
    pred, target = overlapping_pairs(20)
    module = get_box_loss("ciou", loss_weight=2.5, gate_alpha=True, fmt="xyxy")
    torch.testing.assert_close(module(pred, target, avg_factor=4.0), 2.5 * ciou_loss(pred, target, gate_alpha=True, avg_factor=4.0))
    assert "gate_alpha=True" in repr(module)
    log_iou = get_box_loss("iou", mode="log")
    torch.testing.assert_close(log_iou(pred, target), iou_loss(pred, target, mode="log"))
    sl1 = get_box_loss("smooth_l1", beta=0.1)
    torch.testing.assert_close(sl1(pred, target), smooth_l1_loss(pred, target, beta=0.1))
    torch.testing.assert_close(get_box_loss("l1")(pred, target), smooth_l1_loss(pred, target, beta=0.0))
    focal = SigmoidFocalLoss(gamma=1.5, loss_weight=3.0)
    x, y = torch.randn(4, 2), torch.ones(4, 2)
    torch.testing.assert_close(focal(x, y), 3.0 * sigmoid_focal_loss(x, y, gamma=1.5))


def test_module_state_dict_is_empty_and_device_agnostic():
    module = get_box_loss("giou")
    assert isinstance(module, LossModule) and module.state_dict() == {}


# --- bad arguments: ValueError naming argument, value and what is accepted ------------------------------


BOX = torch.rand(3, 4)


@pytest.mark.parametrize(
    "call,fragments",
    [
        (lambda: giou_loss(torch.rand(3, 5), torch.rand(3, 5)), ["pred", "[..., 4]", "[3, 5]"]),
        (lambda: giou_loss(BOX, torch.rand(2, 4)), ["pred", "[3, 4]", "target", "[2, 4]", "broadcast"]),
        (lambda: giou_loss(BOX, BOX, fmt="xyzw"), ["fmt", "'xyzw'", "'cxcywh'"]),
        (lambda: giou_loss(BOX, BOX, reduction="avg"), ["reduction", "'avg'", "'mean'"]),
        (lambda: iou_loss(BOX, BOX, mode="exp"), ["mode", "'exp'", "'log'"]),
        (lambda: box_iou(BOX, BOX, kind="wiou"), ["kind", "'wiou'", "'ciou'"]),
        (lambda: box_iou(BOX[0], BOX[0]), ["a", "[..., N, 4]", "aligned=True"]),
        (lambda: get_box_loss("ciuo"), ["'ciuo'", "ciou", "smooth_l1"]),
        (lambda: get_box_loss("ciou", gate=True), ["gate", "gate_alpha", "loss_weight"]),
        (lambda: smooth_l1_loss(BOX, BOX, beta=-1.0), ["beta", "-1.0", ">= 0"]),
        (lambda: giou_loss(BOX, BOX, weight=torch.rand(4)), ["weight", "[4]", "[3]", "[3, 4]"]),
        (lambda: smooth_l1_loss(BOX, BOX, weight=torch.rand(4)), ["weight", "[4]", "[3, 4]"]),
        (lambda: giou_loss(BOX, BOX, reduction="sum", avg_factor=2.0), ["avg_factor", "sum"]),
        (lambda: giou_loss(BOX, BOX, eps=0.0), ["eps", "0.0", "> 0"]),
        (lambda: giou_loss(BOX.long(), BOX), ["pred", "floating", "torch.int64"]),
        (lambda: giou_loss([0, 0, 1, 1], BOX), ["pred", "torch.Tensor", "list"]),
        (lambda: sigmoid_focal_loss(torch.rand(3), torch.rand(3), gamma=-2), ["gamma", "-2"]),
        (lambda: sigmoid_focal_loss(torch.rand(3), torch.rand(3), alpha=1.5), ["alpha", "1.5"]),
        (lambda: box_convert(BOX, "xyxy", "yolo"), ["out_fmt", "'yolo'"]),
    ],
)
def test_bad_arguments_raise_clear_value_errors(call, fragments):
    with pytest.raises(ValueError) as info:
        call()
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_boxes_imports_with_torch_only():
    # After torch itself is imported, block every other dependency of the project: boxloss.boxes must
    # import, run, and pull in no new top-level package but itself.
    code = """
import sys
import torch
before = set(sys.modules)
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {'torchvision', 'cv2', 'pycocotools', 'albumentations', 'yaml', 'tqdm', 'matplotlib', 'triton', 'hypothesis'}:
            raise ImportError('blocked ' + name)
sys.meta_path.insert(0, Block())
import boxloss.boxes as b
print(sorted({m.split('.')[0] for m in set(sys.modules) - before}))
print(float(b.ciou_loss(torch.tensor([[0., 0, 2, 2]]), torch.tensor([[1., 1, 3, 3]]))))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    new_modules, value = out.stdout.splitlines()
    assert new_modules == "['boxloss']"
    assert abs(float(value) - 61 / 63) < 1e-6
