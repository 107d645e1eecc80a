"""Ultralytics YOLO with registry box losses: same numbers as Ultralytics' own CIoU, training runs, clear errors."""

import os

import pytest
import torch

os.environ.setdefault("YOLO_OFFLINE", "1")
pytest.importorskip("ultralytics")

from ultralytics.cfg import DEFAULT_CFG, get_cfg  # noqa: E402
from ultralytics.nn.tasks import DetectionModel  # noqa: E402
from ultralytics.utils.loss import E2ELoss, v8DetectionLoss  # noqa: E402

from boxloss.data.synthetic import make_synthetic_dataset  # noqa: E402
from boxloss.integrations.ultralytics import (  # noqa: E402
    BoxlossDetectionLoss,
    BoxlossDetectionModel,
    BoxlossDetectionTrainer,
    train,
)
from boxloss.integrations.yolo_data import coco_to_yolo  # noqa: E402


def _model(cfg, cls=DetectionModel, **kw):
    torch.manual_seed(0)
    model = cls(cfg, nc=3, verbose=False, **kw)
    model.args = get_cfg(DEFAULT_CFG)
    return model.train()


def _batch(n_img=2):
    g = torch.Generator().manual_seed(1)
    n = 7
    xy = torch.rand(n, 2, generator=g) * 0.6 + 0.2
    wh = torch.rand(n, 2, generator=g) * 0.3 + 0.05
    return {"batch_idx": torch.tensor([0, 0, 0, 1, 1, 1, 1], dtype=torch.float)[:n] % n_img,
            "cls": torch.randint(0, 3, (n, 1), generator=g).float(), "bboxes": torch.cat([xy, wh], 1)}


def _criterion_both_ways(cfg, ours_kw):
    ref = _model(cfg)
    preds = ref(torch.rand(2, 3, 160, 160, generator=torch.Generator().manual_seed(2)))
    out = []
    for criterion in (ref.init_criterion(), BoxlossDetectionModel.init_criterion(_as_ours(ref, **ours_kw))):
        leaf = {k: v.detach().clone().requires_grad_(True) for k, v in preds.items() if k in ("boxes", "scores")}
        loss, items = criterion.loss({**preds, **leaf}, _batch())
        loss.sum().backward()
        out.append((loss.detach(), leaf["boxes"].grad, leaf["scores"].grad, criterion))
    return out


def _as_ours(model, box_loss="ciou", box_loss_kwargs=None):
    model.box_loss_name, model.box_loss_kwargs = box_loss, box_loss_kwargs or {}
    return model


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_ciou_matches_ultralytics_loss_and_gradients():
    (loss_ref, gb_ref, gs_ref, c_ref), (loss, gb, gs, c) = _criterion_both_ways("yolo11n.yaml", {})
    assert type(c_ref) is v8DetectionLoss and type(c) is BoxlossDetectionLoss
    assert loss_ref[0] > 0.5  # box term (gain 7.5 x batch 2): foreground anchors exist
    torch.testing.assert_close(loss, loss_ref, rtol=1e-5, atol=0)  # box, cls, dfl
    assert gb_ref.abs().sum() > 0
    assert _rel(gb, gb_ref) < 1e-5 and _rel(gs, gs_ref) < 1e-5


def test_other_loss_changes_only_the_box_term():
    (loss_ref, gb_ref, _, _), (loss, gb, _, _) = _criterion_both_ways("yolo11n.yaml", {"box_loss": "siou"})
    assert abs(loss[0] - loss_ref[0]) > 1e-3  # SIoU != CIoU
    torch.testing.assert_close(loss[1:], loss_ref[1:], rtol=1e-6, atol=0)  # same assignment: same BCE and DFL


def test_end_to_end_head_wraps_two_of_our_criteria():
    model = _model("yolo26n.yaml", BoxlossDetectionModel, box_loss="giou")
    criterion = model.init_criterion()
    assert isinstance(criterion, E2ELoss)
    assert type(criterion.one2many) is BoxlossDetectionLoss and type(criterion.one2one) is BoxlossDetectionLoss
    assert criterion.one2one.bbox_loss.box_loss_name == "giou"


def test_unknown_loss_is_one_line_listing_the_names():
    with pytest.raises(ValueError) as err:
        BoxlossDetectionTrainer(overrides={"model": "yolo11n.yaml", "data": "x.yaml"}, box_loss="nope")
    msg = str(err.value)
    assert "\n" not in msg and "unknown box loss 'nope'" in msg and "ciou" in msg and "siou" in msg


@pytest.fixture(scope="module")
def yolo_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    make_synthetic_dataset(root / "coco", n_train=4, n_val=2, size=96, seed=0)
    summary = coco_to_yolo(root / "yolo", {s: (root / "coco" / f"{s}.json", root / "coco" / "images")
                                           for s in ("train", "val")})
    assert summary["train"]["boxes"] > 0
    return summary["data"]


@pytest.fixture
def keep_threads():
    """Ultralytics' select_device sets torch's CPU threads to cpu_count - 1; give the next tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_training_iterations_change_the_weights(yolo_data, tmp_path, keep_threads, monkeypatch):
    """A few iterations train (finite losses, most weights move), and train() gives the caller back torch's
    thread count and the environment Ultralytics changes (it sets both for the whole process)."""
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    torch.set_num_threads(2)
    start = {}

    def snapshot(trainer):
        start.update({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})

    trainer = train(callbacks={"on_train_start": snapshot}, model="yolo11n.yaml", data=yolo_data, box_loss="siou", epochs=1, imgsz=96, batch=2,
                    workers=0, device="cpu", project=str(tmp_path), name="run", val=False, seed=0,
                    deterministic=True, verbose=False, warmup_epochs=0, exist_ok=True)
    assert torch.get_num_threads() == 2 and "PYTHONHASHSEED" not in os.environ
    criterion = trainer.model.criterion
    assert type(criterion) is BoxlossDetectionLoss and criterion.bbox_loss.box_loss_name == "siou"
    losses = trainer.tloss  # mean loss items of the epoch: box_loss, cls_loss, dfl_loss
    assert set(losses) == {"box_loss", "cls_loss", "dfl_loss"}
    assert all(torch.isfinite(v) for v in losses.values()) and losses["box_loss"] > 0
    params = dict(trainer.model.named_parameters())
    assert set(params) <= set(start)
    changed = [n for n, p in params.items() if not torch.equal(p.detach(), start[n])]
    assert len(changed) > len(params) // 2, f"{len(changed)} of {len(params)} parameters changed"


def test_a_model_that_would_be_downloaded_is_refused(yolo_data):
    with pytest.raises(ValueError, match="never downloads weights"):
        train(model="yolo11n.pt", data=yolo_data, box_loss="ciou", epochs=1)


def test_cli_unknown_loss_is_one_line(capsys):
    import importlib
    import sys

    sys.path.insert(0, "scripts")
    try:
        train_yolo = importlib.import_module("train_yolo")
    finally:
        sys.path.remove("scripts")
    assert train_yolo.main(["--box-loss", "nope", "model=yolo11n.yaml", "data=x.yaml", "epochs=1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: unknown box loss 'nope'; accepted: ") and "siou" in err


EXTRA_ARGS = {"nwd": {"constant": 12.8}}


@pytest.fixture(scope="module")
def head_outputs():
    model = _model("yolo11n.yaml")
    with torch.no_grad():  # shared by the tests: no graph of the model to free
        return model, model(torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(3)))


@pytest.mark.parametrize("name", __import__("boxloss.boxes", fromlist=["x"]).available_box_losses())
def test_every_registry_loss_runs_in_the_criterion(head_outputs, name):
    model, preds = head_outputs
    criterion = BoxlossDetectionModel.init_criterion(_as_ours(model, name, EXTRA_ARGS.get(name)))
    leaf = preds["boxes"].clone().requires_grad_(True)
    loss, _ = criterion.loss({**preds, "boxes": leaf}, _batch())
    loss.sum().backward()
    assert torch.isfinite(loss).all() and loss[0] > 0
    assert torch.isfinite(leaf.grad).all() and leaf.grad.abs().sum() > 0
    if name == "mpdiou":  # img_size defaults to the training imgsz
        assert criterion.bbox_loss.box_loss.kwargs["img_size"] == (640, 640)
