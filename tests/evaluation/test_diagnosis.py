"""diagnose_run on synthetic training curves: rising, flat, over-fitting, healthy, diverged, short."""

import csv
import io

import numpy as np
import pytest

from boxloss.evaluation.diagnosis import diagnose_run


def make_log(train_loss, ap=None, val_loss=None, steps_per_epoch=10, noise=0.02, seed=0):
    """log.csv-like rows: train rows with `loss` (plus noise), one eval row per epoch."""
    rng = np.random.default_rng(seed)
    rows = []
    epochs = len(train_loss)
    for e in range(epochs):
        for s in range(steps_per_epoch):
            step = e * steps_per_epoch + s + 1
            rows.append({"kind": "train", "epoch": e + 1, "step": step, "loss": train_loss[e] * (1 + noise * rng.standard_normal())})
        if ap is not None:
            row = {"kind": "eval", "epoch": e + 1, "step": (e + 1) * steps_per_epoch, "AP": ap[e]}
            if val_loss is not None:
                row["val_loss"] = val_loss[e]
            rows.append(row)
    return rows


def tags(findings):
    return [f.split(":")[0] for f in findings]


E = np.arange(1, 13)


def test_healthy():
    rows = make_log(2.0 * np.exp(-E / 5) + 0.3, ap=0.5 * (1 - np.exp(-E / 3)), val_loss=2.0 * np.exp(-E / 6) + 0.4)
    assert tags(diagnose_run(rows)) == ["healthy"]


def test_healthy_but_still_improving():
    rows = make_log(2.0 * np.exp(-E / 5) + 0.3, ap=0.002 * E**2)  # AP accelerating at the end
    findings = diagnose_run(rows)
    assert tags(findings) == ["healthy", "still improving"] and "not converged" in findings[1]


def test_rising():
    rows = make_log(1.0 + 0.15 * E, ap=np.full(12, 0.01))
    (finding,) = diagnose_run(rows)
    assert finding.startswith("rising") and "learning rate" in finding


def test_rebound_after_a_dip_is_rising():
    loss = np.concatenate([np.linspace(2.0, 0.5, 6), np.linspace(0.6, 1.6, 6)])
    assert tags(diagnose_run(make_log(loss))) == ["rising"]


def test_flat_is_stuck():
    rows = make_log(np.full(12, 1.3), ap=np.full(12, 0.002), val_loss=np.full(12, 1.4))
    (finding,) = diagnose_run(rows)
    assert finding.startswith("stuck") and "lower the learning rate" in finding


def test_over_fitting_ap_worsens():
    ap = np.concatenate([np.linspace(0.1, 0.4, 6), np.linspace(0.39, 0.30, 6)])
    rows = make_log(2.0 * np.exp(-E / 4) + 0.1, ap=ap)
    (finding,) = diagnose_run(rows)
    assert finding.startswith("over-fitting") and "peaked at 40.0%" in finding


def test_over_fitting_val_loss_rises():
    val = np.concatenate([np.linspace(2.0, 1.0, 6), np.linspace(1.05, 1.5, 6)])
    ap = np.concatenate([np.linspace(0.1, 0.3, 6), np.full(6, 0.3) + np.linspace(0, 0.005, 6)])
    rows = make_log(2.0 * np.exp(-E / 4) + 0.1, ap=ap, val_loss=val)
    assert tags(diagnose_run(rows)) == ["over-fitting"]
    assert "val loss rose" in diagnose_run(rows)[0]


def test_over_fitting_ap_stalls_while_train_falls():
    ap = np.concatenate([np.linspace(0.1, 0.3, 6), np.full(6, 0.3)])
    rows = make_log(3.0 - 0.2 * E, ap=ap)  # train loss keeps falling linearly
    (finding,) = diagnose_run(rows)
    assert finding.startswith("over-fitting (likely)")


def test_diverged_and_short():
    rows = make_log(np.linspace(2, 1, 12))
    rows[40]["loss"] = float("nan")
    assert tags(diagnose_run(rows)) == ["diverged"]
    assert tags(diagnose_run(make_log([1.0], steps_per_epoch=3))) == ["short"]
    assert tags(diagnose_run([])) == ["short"]


def test_reads_csv_strings():
    rows = make_log(2.0 * np.exp(-E / 5) + 0.3, ap=0.5 * (1 - np.exp(-E / 3)))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["kind", "epoch", "step", "loss", "AP", "val_loss"])
    writer.writeheader()
    writer.writerows(rows)
    as_strings = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert diagnose_run(as_strings) == diagnose_run(rows)


@pytest.mark.parametrize("seed", range(5))
def test_noise_does_not_flip_a_healthy_run(seed):
    rows = make_log(2.0 * np.exp(-E / 5) + 0.3, ap=0.5 * (1 - np.exp(-E / 3)), noise=0.2, seed=seed)
    assert tags(diagnose_run(rows)) == ["healthy"]
