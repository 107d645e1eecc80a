"""torchvision FCOS, RetinaNet and Faster R-CNN with registry box losses: same numbers as torchvision's own."""

import pytest
import torch
from torchvision.models import detection
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from boxloss.integrations.torchvision import (
    BoxlossFCOSHead,
    BoxlossRetinaNetRegressionHead,
    BoxlossRoIHeads,
    fasterrcnn_mobilenet_v3_large_fpn,
    fcos_resnet50_fpn,
    with_box_loss,
)

SMALL = {"min_size": 96, "max_size": 128, "num_classes": 4}


def _small(cls):
    """torchvision's FCOS or RetinaNet on a ResNet-18 FPN (P3-P7, as the ResNet-50 builders): fast on 2 cores."""
    torch.manual_seed(0)
    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5,
                                   returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256))
    return cls(backbone, **SMALL)


def _data(seed=0, n=2):
    g = torch.Generator().manual_seed(seed)
    images = [torch.rand(3, 96, 128, generator=g) for _ in range(n)]
    targets = []
    for _ in range(n):
        xy = torch.rand(3, 2, generator=g) * torch.tensor([70.0, 50.0])
        wh = torch.rand(3, 2, generator=g) * 30 + 15
        targets.append({"boxes": torch.cat([xy, xy + wh], 1), "labels": torch.randint(1, 4, (3,), generator=g)})
    return images, targets


def _losses_and_grads(model, seed=0):
    model.train()
    model.zero_grad()
    torch.manual_seed(seed)  # RPN / RoI sampling draw random numbers
    losses = model(*_data())
    sum(losses.values()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return {k: v.detach() for k, v in losses.items()}, grads


def _assert_same(ours, ref, rtol=1e-5):
    (l_ours, g_ours), (l_ref, g_ref) = ours, ref
    assert l_ours.keys() == l_ref.keys()
    for k in l_ref:
        torch.testing.assert_close(l_ours[k], l_ref[k], rtol=rtol, atol=0, msg=k)
    assert g_ours.keys() == g_ref.keys()
    flat_ours = torch.cat([g_ours[n].flatten() for n in g_ref])
    flat_ref = torch.cat([g_ref[n].flatten() for n in g_ref])
    assert flat_ref.norm() > 0
    assert ((flat_ours - flat_ref).norm() / flat_ref.norm()).item() < rtol


def test_fcos_giou_matches_torchvision():
    model = _small(detection.FCOS)
    ref = _losses_and_grads(model)
    keys = set(model.state_dict())
    with_box_loss(model, "giou")
    assert isinstance(model.head, BoxlossFCOSHead) and set(model.state_dict()) == keys
    ours = _losses_and_grads(model)
    assert ref[0]["bbox_regression"] > 0.1
    _assert_same(ours, ref)
    other, _ = _losses_and_grads(with_box_loss(model, "diou"))  # the loss really is ours: DIoU != GIoU
    assert abs(other["bbox_regression"] - ref[0]["bbox_regression"]) > 1e-3
    torch.testing.assert_close(other["classification"], ref[0]["classification"], rtol=1e-6, atol=0)


@pytest.mark.parametrize("kind", ["giou", "ciou"])
def test_retinanet_matches_torchvision_loss_type(kind):
    model = _small(detection.RetinaNet)
    model.head.regression_head._loss_type = kind
    ref = _losses_and_grads(model)
    with_box_loss(model, kind)
    assert isinstance(model.head.regression_head, BoxlossRetinaNetRegressionHead)
    ours = _losses_and_grads(model)
    assert ref[0]["bbox_regression"] > 0.1
    _assert_same(ours, ref)


def test_faster_rcnn_smooth_l1_matches_fastrcnn_loss():
    torch.manual_seed(0)
    model = detection.fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None, **SMALL)
    ref = _losses_and_grads(model)
    with_box_loss(model, "smooth_l1", beta=1 / 9)
    assert isinstance(model.roi_heads, BoxlossRoIHeads)
    ours = _losses_and_grads(model)
    assert ref[0]["loss_box_reg"] > 0
    _assert_same(ours, ref)


def test_builders_use_our_heads():
    model = fcos_resnet50_fpn("ciou", num_classes=3)
    assert isinstance(model.head, BoxlossFCOSHead) and model.head.box_loss_name == "ciou"
    assert type(model.backbone.body.bn1) is torch.nn.BatchNorm2d  # weights_backbone=None: nothing pretrained


@pytest.mark.parametrize("build, loss", [
    (lambda loss: with_box_loss(_small(detection.FCOS), loss), "siou"),
    (lambda loss: with_box_loss(_small(detection.RetinaNet), loss), "eiou"),
    (lambda loss: fasterrcnn_mobilenet_v3_large_fpn(loss, **SMALL), "ciou"),
], ids=["fcos", "retinanet", "faster_rcnn"])
def test_training_iterations(build, loss):
    torch.manual_seed(0)
    model = build(loss)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    for step in range(3):
        losses = model(*_data(seed=step))
        total = sum(losses.values())
        assert torch.isfinite(total)
        opt.zero_grad()
        total.backward()
        opt.step()
    changed = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p.detach(), before[n])]
    assert len(changed) > len(before) // 2
    model.eval()
    with torch.no_grad():
        out = model(_data()[0])
    assert len(out) == 2 and {"boxes", "scores", "labels"} <= set(out[0])


def test_unknown_loss_is_one_line_listing_the_names():
    with pytest.raises(ValueError) as err:
        fcos_resnet50_fpn("nope", num_classes=3)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("unknown box loss 'nope'; accepted: ") and "ciou" in msg
    with pytest.raises(ValueError, match="supports torchvision FCOS, RetinaNet and Faster R-CNN"):
        with_box_loss(torch.nn.Linear(2, 2), "giou")


@pytest.mark.parametrize("name", __import__("boxloss.boxes", fromlist=["x"]).available_box_losses())
def test_every_registry_loss_runs_in_the_fcos_head(name):
    from torchvision.models.detection.fcos import FCOSHead

    kwargs = {"nwd": {"constant": 12.8}, "mpdiou": {"img_size": (64, 64)}}.get(name, {})
    torch.manual_seed(0)
    head = BoxlossFCOSHead(FCOSHead(32, 1, 3, num_convs=1), name, **kwargs)
    features = [torch.rand(2, 32, 8, 8)]
    outputs = head(features)
    ys, xs = torch.meshgrid(torch.arange(8) * 8.0 + 4, torch.arange(8) * 8.0 + 4, indexing="ij")
    centres = torch.stack([xs.flatten(), ys.flatten()], 1)
    anchors = [torch.cat([centres - 4, centres + 4], 1)] * 2
    targets = [{"boxes": torch.tensor([[4.0, 6.0, 40.0, 30.0], [20.0, 20.0, 60.0, 62.0]]),
                "labels": torch.tensor([1, 2])}] * 2
    matched = [torch.where(torch.rand(64, generator=torch.Generator().manual_seed(i)) < 0.3,
                           torch.randint(0, 2, (64,)), -1) for i in range(2)]
    losses = head.compute_loss(targets, outputs, anchors, matched)
    losses["bbox_regression"].backward()
    grad = head.regression_head.bbox_reg.weight.grad
    assert torch.isfinite(losses["bbox_regression"]) and losses["bbox_regression"] > 0
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
