"""Wise-IoU v3's running mean: buffer in state_dict, the update rule, train/eval, weights, empty batches,
the registry entry, torch.compile, and consistency across two DDP (gloo, CPU) ranks."""

import io
import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from boxloss.boxes import WIoUv3Loss, get_box_loss, wiou_momentum, wiou_v3_loss

# Case A: pred (0,0,4,4), target (2,2,6,6): IoU 1/7, L_IoU = 6/7. Case B: pred (0,0,4,2), target (0,0,2,2):
# IoU 1/2, L_IoU = 1/2 (worked out in test_newer_losses.py).
A_P, A_T = [0.0, 0.0, 4.0, 4.0], [2.0, 2.0, 6.0, 6.0]
B_P, B_T = [0.0, 0.0, 4.0, 2.0], [0.0, 0.0, 2.0, 2.0]
PRED, TARGET = torch.tensor([A_P, B_P]), torch.tensor([A_T, B_T])


def test_buffer_is_persistent_state():
    loss = WIoUv3Loss()
    assert list(loss.state_dict()) == ["iou_mean"]
    assert loss.iou_mean.item() == 1.0 and not loss.iou_mean.requires_grad  # the authors' initial value
    assert loss.momentum == pytest.approx(1 - 0.05 ** (1 / (890 * 34)))  # the authors' iou.py example


def test_update_rule_and_loss_use_the_updated_mean():
    loss = WIoUv3Loss(momentum=0.5)
    out = loss(PRED, TARGET)
    # batch mean of L_IoU = (6/7 + 1/2) / 2 = 19/28; iou_mean = 0.5 * 1 + 0.5 * 19/28 = 47/56
    assert loss.iou_mean.item() == pytest.approx(47 / 56, rel=1e-6)
    # updated before scaling (authors' order): the loss of this batch already uses 47/56
    torch.testing.assert_close(out, wiou_v3_loss(PRED, TARGET, iou_mean=47 / 56))
    loss(PRED, TARGET)
    # 0.5 * 47/56 + 0.5 * 19/28 = 85/112
    assert loss.iou_mean.item() == pytest.approx(85 / 112, rel=1e-6)


def test_eval_mode_does_not_update():
    loss = WIoUv3Loss(momentum=0.5).eval()
    out = loss(PRED, TARGET)
    assert loss.iou_mean.item() == 1.0
    torch.testing.assert_close(out, wiou_v3_loss(PRED, TARGET, iou_mean=1.0))


def test_weights_select_the_boxes_that_count():
    loss = WIoUv3Loss(momentum=0.5)
    loss(PRED, TARGET, weight=torch.tensor([1.0, 0.0]))
    # only case A counts: 0.5 * 1 + 0.5 * 6/7 = 13/14
    assert loss.iou_mean.item() == pytest.approx(13 / 14, rel=1e-6)
    loss(PRED, TARGET, weight=torch.tensor([[2.0] * 4, [2.0] * 4]))  # per-coordinate weights, same per box
    # weighted mean (2 * 6/7 + 2 * 1/2) / 4 = 19/28: 0.5 * 13/14 + 0.5 * 19/28 = 45/56
    assert loss.iou_mean.item() == pytest.approx(45 / 56, rel=1e-6)


def test_empty_batch_leaves_the_mean_alone():
    loss = WIoUv3Loss(momentum=0.5)
    p = torch.zeros(0, 4, requires_grad=True)
    out = loss(p, torch.zeros(0, 4))
    out.backward()
    assert out.item() == 0.0 and loss.iou_mean.item() == 1.0
    loss(PRED, TARGET, weight=torch.zeros(2))  # all weights 0: nothing counts either
    assert loss.iou_mean.item() == 1.0


def test_state_dict_round_trip_through_a_checkpoint():
    model = torch.nn.ModuleDict({"box_loss": get_box_loss("wiou_v3", momentum=0.3)})
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        t = torch.rand(8, 2, generator=g) * 50
        target = torch.cat([t, t + 10], -1)
        model["box_loss"](target + torch.randn(8, 4, generator=g), target)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    resumed = torch.nn.ModuleDict({"box_loss": get_box_loss("wiou_v3", momentum=0.3)})
    resumed.load_state_dict(torch.load(buf))
    assert torch.equal(resumed["box_loss"].iou_mean, model["box_loss"].iou_mean)
    assert resumed["box_loss"].iou_mean.item() != 1.0
    # training continues identically
    torch.testing.assert_close(resumed["box_loss"](PRED, TARGET), model["box_loss"](PRED, TARGET))
    assert torch.equal(resumed["box_loss"].iou_mean, model["box_loss"].iou_mean)


def test_gradient_flows_to_boxes_not_to_state():
    loss = WIoUv3Loss(momentum=0.5)
    p = PRED.clone().double().requires_grad_(True)
    out = loss(p, TARGET.double())
    assert out.dtype == torch.float64 and loss.iou_mean.dtype == torch.float32
    (g,) = torch.autograd.grad(out, p)
    p2 = p.detach().clone().requires_grad_(True)
    (g2,) = torch.autograd.grad(wiou_v3_loss(p2, TARGET.double(), iou_mean=loss.iou_mean.double()), p2)
    torch.testing.assert_close(g, g2)


def test_registry_and_arguments():
    loss = get_box_loss("wiou_v3", loss_weight=2.0, momentum=0.5, alpha=2.5, delta=4.0, reduction="sum")
    assert isinstance(loss, WIoUv3Loss)
    out = loss(PRED, TARGET)
    mean = loss.iou_mean.item()
    torch.testing.assert_close(out, 2.0 * wiou_v3_loss(PRED, TARGET, iou_mean=mean, alpha=2.5, delta=4.0, reduction="sum"))
    assert "momentum=0.5" in repr(loss)
    with pytest.raises(ValueError, match="iou_mean"):
        get_box_loss("wiou_v3", iou_mean=0.5)
    with pytest.raises(ValueError, match="momentum"):
        get_box_loss("wiou_v3", momentum=0.0)
    with pytest.raises(ValueError, match="momentum"):
        get_box_loss("wiou_v3", momentum=1.5)
    with pytest.raises(ValueError, match="delta"):
        get_box_loss("wiou_v3", delta=-1.0)
    with pytest.raises(ValueError, match="bogus"):
        get_box_loss("wiou_v3", bogus=1)


def test_buffer_keeps_full_precision_through_half():
    loss = WIoUv3Loss(momentum=1e-3).half()
    assert loss.iou_mean.dtype == torch.float32
    loss.to(torch.bfloat16)
    assert loss.iou_mean.dtype == torch.float32 and list(loss.state_dict()) == ["iou_mean"]
    loss(PRED.half(), TARGET.half())
    # 0.999 * 1 + 0.001 * 19/28 = 0.999679, which an fp16 buffer (spacing 2^-11 below 1) would round to 0.999512
    assert loss.iou_mean.item() == pytest.approx(0.999 + 0.001 * 19 / 28, rel=1e-6)
    assert loss.double().iou_mean.dtype == torch.float64


def test_momentum_helper():
    m = wiou_momentum(100, 5)
    # after n * t = 500 updates the initial value keeps weight 0.05
    assert (1 - m) ** 500 == pytest.approx(0.05, rel=1e-9)
    with pytest.raises(ValueError, match="batches_per_epoch"):
        wiou_momentum(0, 5)


def test_torch_compile_fullgraph_updates_the_buffer_like_eager():
    torch._dynamo.reset()
    eager, compiled_mod = WIoUv3Loss(momentum=0.5), WIoUv3Loss(momentum=0.5)
    compiled = torch.compile(compiled_mod, backend="aot_eager", fullgraph=True)
    for _ in range(2):
        torch.testing.assert_close(compiled(PRED, TARGET), eager(PRED, TARGET))
    torch.testing.assert_close(compiled_mod.iou_mean, eager.iou_mean)
    assert compiled_mod.iou_mean.item() == pytest.approx(85 / 112, rel=1e-6)


def _ddp_worker(rank, world_size, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        loss = WIoUv3Loss(momentum=0.5)
        if rank == 0:  # one box of case A
            pred, target = torch.tensor([A_P]), torch.tensor([A_T])
        else:  # three boxes of case B
            pred, target = torch.tensor([B_P] * 3), torch.tensor([B_T] * 3)
        loss(pred, target)
        torch.save(loss.iou_mean.clone(), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_ddp_ranks_share_the_running_mean(tmp_path):
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    means = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert torch.equal(means[0], means[1])
    # mean over all 4 boxes: (6/7 + 3 * 1/2) / 4 = 33/56 (not the mean of the rank means, 19/28);
    # iou_mean = 0.5 * 1 + 0.5 * 33/56 = 89/112
    assert means[0].item() == pytest.approx(89 / 112, rel=1e-6)
    assert not math.isclose(means[0].item(), 0.5 + 0.5 * 19 / 28, rel_tol=1e-3)


class _AuthorsWIoUv3:
    """Instinct323/wiou iou.py (branch v1, the paper's code; `IouLoss(n, t, ltype='WIoU', monotonous=False)`),
    transcribed: L_IoU, R = exp(rho^2 / (W_g^2 + H_g^2)*), the running mean updated with the batch mean of
    L_IoU *before* r = beta / (delta * alpha^(beta - delta)) scales the loss, iou_mean starting at 1."""

    def __init__(self, momentum, alpha=1.9, delta=3.0):
        self.momentum, self.alpha, self.delta = momentum, alpha, delta
        self.iou_mean = torch.tensor(1.0)

    def __call__(self, pred, target):
        pred_xy, pred_wh = (pred[..., :2] + pred[..., 2:4]) / 2, pred[..., 2:4] - pred[..., :2]
        target_xy, target_wh = (target[..., :2] + target[..., 2:4]) / 2, target[..., 2:4] - target[..., :2]
        min_coord, max_coord = torch.minimum(pred, target), torch.maximum(pred, target)
        s_inter = torch.prod(torch.relu(min_coord[..., 2:4] - max_coord[..., :2]), dim=-1)
        s_union = torch.prod(pred_wh, dim=-1) + torch.prod(target_wh, dim=-1) - s_inter
        l2_box = torch.square(max_coord[..., 2:4] - min_coord[..., :2]).sum(dim=-1)
        l2_center = torch.square(pred_xy - target_xy).sum(dim=-1)
        l_iou = 1 - s_inter / s_union
        self.iou_mean.mul_(1 - self.momentum)
        self.iou_mean.add_(self.momentum * l_iou.detach().mean().item())
        loss = torch.exp(l2_center / l2_box.detach()) * l_iou
        beta = l_iou.detach() / self.iou_mean
        return loss * beta / (self.delta * torch.pow(self.alpha, beta - self.delta))


def test_matches_the_authors_code_over_several_steps():
    # values, gradients and the running mean against the transcription above, three training steps
    g = torch.Generator().manual_seed(7)
    ours, theirs = WIoUv3Loss(momentum=0.3, reduction="none"), _AuthorsWIoUv3(momentum=0.3)
    for _ in range(3):
        xy = torch.rand(64, 2, generator=g) * 50
        wh = 1 + torch.rand(64, 2, generator=g) * 30
        target = torch.cat([xy, xy + wh], -1)
        pred = target + 0.3 * wh.repeat(1, 2) * torch.randn(64, 4, generator=g)
        pred = torch.cat([torch.minimum(pred[:, :2], pred[:, 2:] - 0.5), pred[:, 2:]], -1)
        p1, p2 = pred.clone().requires_grad_(), pred.clone().requires_grad_()
        a, b = ours(p1, target), theirs(p2, target)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        a.sum().backward()
        b.sum().backward()
        torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ours.iou_mean, theirs.iou_mean, rtol=1e-6, atol=0)
