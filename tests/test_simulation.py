"""The DIoU-paper simulation (boxloss.evaluation.simulation and its script), on a tiny version."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from boxloss.boxes.fused import cpu_kernels_available
from boxloss.evaluation.simulation import FULL_CASES, learning_rates, make_cases, run_simulation

ROOT = Path(__file__).resolve().parents[1]


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


@pytest.mark.skipif(not cpu_kernels_available(), reason="no C++ compiler for the fused kernels")
@pytest.mark.parametrize("grad_mode", ["exact", "paper"])
def test_fused_descent_matches_torch_autograd(grad_mode):
    """The fused simulation kernel takes the same steps as autograd on the public losses."""
    losses = ["iou", "giou", "diou", "ciou"]
    kw = dict(n_cases=343, iters=30, dtype=torch.float64, grad_mode=grad_mode)
    fused = run_simulation(losses, backend="fused", **kw)
    if grad_mode == "paper":
        from boxloss.evaluation import simulation

        ref = {"error_curve": {}}
        anchors, targets = make_cases(343, dtype=torch.float64)
        for name in losses:
            _, err = simulation._descend_torch(name, anchors, targets, 30, "paper", 1e-7, impl="fused")
            ref["error_curve"][name] = err.tolist()
    else:
        ref = run_simulation(losses, backend="torch", **kw)
    for name in losses:
        torch.testing.assert_close(
            torch.tensor(fused["error_curve"][name]), torch.tensor(ref["error_curve"][name]), rtol=1e-9, atol=1e-9
        )


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
