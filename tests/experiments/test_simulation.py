"""The DIoU-paper simulation (boxloss.experiments.simulation and its script), on a tiny version."""

import ast
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from boxloss.boxes import cpu_kernels_available
from boxloss.experiments import simulation
from boxloss.experiments.simulation import FULL_CASES, learning_rates, make_cases, run_simulation

ROOT = Path(__file__).resolve().parents[2]
NEEDS_CPP = pytest.mark.skipif(not cpu_kernels_available(), reason="no C++ compiler for the fused kernels")


def test_cases_follow_the_paper():
    assert FULL_CASES == 7 * 7 * 7 * 5000 == 1_715_000
    anchors, targets = make_cases(343 * 3, dtype=torch.float64)
    assert anchors.shape == targets.shape == (1029, 4)
    # targets: area 1, centred at (10, 10), 7 aspect ratios
    torch.testing.assert_close(targets[:, 2] * targets[:, 3], torch.ones(1029, dtype=torch.float64))
    assert (targets[:, :2] == 10).all()
    ratios = sorted({round(r, 6) for r in (targets[:, 2] / targets[:, 3]).tolist()})
    assert ratios == sorted(round(r, 6) for r in (1 / 4, 1 / 3, 1 / 2, 1, 2, 3, 4))
    # anchors: centres within radius 3, 7 scales x 7 ratios at each centre
    assert ((anchors[:, :2] - 10).norm(dim=-1) <= 3 + 1e-9).all()
    areas = sorted({round(a, 6) for a in (anchors[:, 2] * anchors[:, 3]).tolist()})
    assert areas == [0.5, 0.67, 0.75, 1.0, 1.33, 1.5, 2.0]
    assert len({tuple(c) for c in anchors[:, :2].tolist()}) == 3
    assert make_cases(100)[0].shape == (100, 4)


def test_learning_rate_schedule():
    lr = learning_rates(200)
    assert lr[:160] == [0.1] * 160 and lr[160:180] == [0.01] * 20 and lr[180:] == [0.001] * 20


@NEEDS_CPP
@pytest.mark.parametrize("grad_mode", ["exact", "paper"])
def test_fused_descent_matches_torch_autograd(grad_mode):
    """The fused backend (the public losses with impl="fused") takes the same steps as torch autograd on the
    reference formulas; for grad_mode="paper", CIoU's reference is `ciou_loss_paper_grad` (torch,
    independent of the C++ code)."""
    losses = ["iou", "giou", "diou", "ciou"]
    kw = dict(n_cases=343, iters=30, dtype=torch.float64, grad_mode=grad_mode)
    fused = run_simulation(losses, backend="fused", **kw)
    ref = run_simulation(losses, backend="torch", **kw)
    assert fused["config"]["backend"] == "fused" and ref["config"]["backend"] == "torch"
    for name in losses:
        torch.testing.assert_close(
            torch.tensor(fused["error_curve"][name]), torch.tensor(ref["error_curve"][name]), rtol=1e-9, atol=1e-9
        )


@NEEDS_CPP
def test_fused_backend_calls_the_public_losses_with_impl_fused(monkeypatch):
    """Each step of the fused backend is one call of the public loss with impl="fused" (and CIoU's
    grad_mode), on the whole batch of cases, summed."""
    calls = []

    def spy(fn):
        def wrapped(b, t, **kw):
            calls.append((fn.__name__, b.shape[0], kw))
            return fn(b, t, **kw)

        wrapped.__name__ = fn.__name__
        return wrapped

    monkeypatch.setattr(simulation, "_LOSSES", {k: spy(v) for k, v in simulation._LOSSES.items()})
    run_simulation(["giou", "ciou"], n_cases=343, iters=3, grad_mode="paper", backend="fused")
    assert [c[:2] for c in calls] == [("giou_loss", 343)] * 3 + [("ciou_loss", 343)] * 3
    assert all(kw["impl"] == "fused" and kw["reduction"] == "sum" and kw["fmt"] == "cxcywh" for _, _, kw in calls)
    assert [kw.get("grad_mode") for _, _, kw in calls] == [None] * 3 + ["paper"] * 3


def test_the_simulation_uses_only_the_public_losses():
    """The simulation imports nothing from the kernels' internals (boxloss.boxes.kernels.*, the C++ library):
    from boxloss.boxes only its public names, from boxloss.boxes.kernels only GRAD_MODES."""
    import boxloss.boxes

    tree = ast.parse(Path(simulation.__file__).read_text())
    imported = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported += [(a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            imported += [(("." * node.level) + (node.module or ""), a.name) for a in node.names]
    boxloss_imports = [(m, n) for m, n in imported if m.startswith(("boxloss", "."))]
    assert boxloss_imports, "the scan found no import of boxloss: it is not looking at the right file"
    for module, name in boxloss_imports:
        assert "fused" not in module and name != "fused" and not (name or "").startswith("_"), (module, name)
        if module == "boxloss.boxes":
            assert name in boxloss.boxes.__all__, name
        else:
            assert (module, name) == ("boxloss.boxes.kernels", "GRAD_MODES"), (module, name)
    assert "bl_simulate" not in Path(simulation.__file__).read_text()


@NEEDS_CPP
def test_fused_and_torch_backends_agree_in_float32():
    """The default dtype: the two backends differ only by rounding (the gradients are computed in a
    different order), so the error curves agree closely, not exactly."""
    losses = ["iou", "giou", "diou", "ciou"]
    kw = dict(n_cases=343, iters=30, dtype=torch.float32)
    fused = run_simulation(losses, backend="fused", **kw)
    ref = run_simulation(losses, backend="torch", **kw)
    for name in losses:
        torch.testing.assert_close(
            torch.tensor(fused["error_curve"][name]), torch.tensor(ref["error_curve"][name]), rtol=1e-5, atol=0
        )


def test_paper_and_exact_ciou_descents_differ():
    """The two grad modes take different steps (so agreeing with the torch reference above means
    agreeing on the paper's gradient, not on a grad_mode both sides ignore)."""
    kw = dict(n_cases=343, iters=30, dtype=torch.float64, backend="torch")
    exact = run_simulation(["ciou"], grad_mode="exact", **kw)["error_curve"]["ciou"]
    paper = run_simulation(["ciou"], grad_mode="paper", **kw)["error_curve"]["ciou"]
    assert abs(paper[-1] - exact[-1]) > 1e-3 * exact[-1]


def _paper_minus_exact_grad_by_hand(w, h, wt, ht, iou):
    """d loss / d (w, h) of CIoU, paper mode minus exact mode, for cxcywh boxes with the same centre:
    only alpha * v differs, v = K (atan(wt/ht) - atan(w/h))^2; exact dv/dw = -2 K D h / (w^2 + h^2),
    dv/dh = 2 K D w / (w^2 + h^2) with D = atan(wt/ht) - atan(w/h); paper: without the / (w^2 + h^2)."""
    k = 4 / math.pi**2
    d = math.atan(wt / ht) - math.atan(w / h)
    v = k * d * d
    alpha = v / (1 - iou + v)
    s = w * w + h * h
    return alpha * -2 * k * d * h * (1 - 1 / s), alpha * 2 * k * d * w * (1 - 1 / s)


@pytest.mark.parametrize("impl", [pytest.param("fused", marks=NEEDS_CPP), "torch"])
def test_paper_gradient_against_hand_worked_values(impl):
    """pred (cx, cy, w, h) = (0, 0, 2, 1) on target (0, 0, 1, 1): IoU 1/2, same centre. The paper-mode
    gradient (C++ kernel, or the torch reference) minus the exact one (the reference path) is the
    hand-derived difference in the v term: (0.0161523, -0.0323046) for (w, h), zero for the centre."""
    from boxloss.boxes import ciou_loss
    from boxloss.experiments.simulation import ciou_loss_paper_grad

    target = torch.tensor([[0.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    grads = {}
    for mode in ("paper", "exact"):
        pred = torch.tensor([[0.0, 0.0, 2.0, 1.0]], dtype=torch.float64, requires_grad=True)
        if mode == "exact":
            loss = ciou_loss(pred, target, fmt="cxcywh", eps=1e-12, impl="reference")
        elif impl == "fused":
            loss = ciou_loss(pred, target, fmt="cxcywh", eps=1e-12, grad_mode="paper", impl="fused")
        else:
            loss = ciou_loss_paper_grad(pred, target, fmt="cxcywh", eps=1e-12).sum()
        loss.backward()
        grads[mode] = pred.grad[0]
    dw, dh = _paper_minus_exact_grad_by_hand(2.0, 1.0, 1.0, 1.0, iou=0.5)
    assert dw == pytest.approx(0.0161523, abs=1e-7) and dh == pytest.approx(-0.0323046, abs=1e-7)
    expected = torch.tensor([0.0, 0.0, dw, dh], dtype=torch.float64)
    torch.testing.assert_close(grads["paper"] - grads["exact"], expected, rtol=0, atol=1e-12)


def test_paper_grad_mode_runs_without_the_fused_kernels(monkeypatch):
    """No C++ compiler (the kernel library unavailable): grad_mode="paper" runs on the torch backend."""
    monkeypatch.setattr(simulation, "cpu_kernels_available", lambda: False)
    res = run_simulation(["ciou"], n_cases=343, iters=5, grad_mode="paper", backend="auto")
    assert res["config"]["backend"] == "torch" and res["final_error"]["ciou"] < res["config"]["initial_error"]
    with pytest.raises(RuntimeError, match="backend='fused' needs the fused CPU kernels, which are unavailable"):
        run_simulation(["ciou"], n_cases=343, iters=5, backend="fused")


def test_result_structure_and_direction():
    res = run_simulation(["iou", "diou"], n_cases=343, iters=40)
    assert set(res) >= {"final_error", "error_curve", "seconds"}
    assert len(res["error_curve"]["diou"]) == 40
    assert all(math.isfinite(v) for v in res["error_curve"]["diou"])
    # DIoU moves non-overlapping anchors, IoU cannot: DIoU ends lower
    assert res["final_error"]["diou"] < res["final_error"]["iou"] < res["config"]["initial_error"] + 1e-6
    with pytest.raises(ValueError, match="unknown loss"):
        run_simulation(["l2"], n_cases=10, iters=1)


def test_script_writes_json_and_plot(tmp_path):
    out = tmp_path / "sim"
    cmd = [sys.executable, str(ROOT / "scripts" / "simulate_regression.py"), "--losses", "giou,ciou",
           "--cases", "343", "--iters", "20", "--output-dir", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((out / "simulation.json").read_text())
    assert set(data["final_error"]) == {"giou", "ciou"}
    assert len(data["error_curve"]["ciou"]) == 20 and data["seconds"]["giou"] >= 0
    assert (out / "simulation.png").stat().st_size > 1000


def _sim_main():
    import runpy

    return runpy.run_path(str(ROOT / "scripts" / "simulate_regression.py"))["main"]


@pytest.mark.parametrize("backend", ["torch", "auto-without-compiler"])
def test_script_paper_grad_mode_on_the_torch_backend(backend, tmp_path, monkeypatch, capsys):
    if backend == "auto-without-compiler":
        monkeypatch.setattr(simulation, "cpu_kernels_available", lambda: False)
    argv = ["--losses", "ciou", "--grad-mode", "paper", "--backend", backend.split("-")[0], "--cases", "343",
            "--iters", "5", "--output-dir", str(tmp_path)]
    assert _sim_main()(argv) == 0
    assert "CIoU grad paper, backend torch" in capsys.readouterr().out
    data = json.loads((tmp_path / "simulation.json").read_text())
    assert data["config"]["grad_mode"] == "paper" and len(data["error_curve"]["ciou"]) == 5


def test_script_bad_input_is_one_line(tmp_path, monkeypatch, capsys):
    main = _sim_main()
    assert main(["--losses", "l2", "--cases", "10", "--iters", "1", "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown loss 'l2'; accepted: iou, giou, diou, ciou") and err.count("\n") == 1, err
    monkeypatch.setattr(simulation, "cpu_kernels_available", lambda: False)
    assert main(["--backend", "fused", "--cases", "10", "--iters", "1", "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: backend='fused' needs the fused CPU kernels") and err.count("\n") == 1, err
    assert not (tmp_path / "simulation.json").exists()
