"""The integrations stay optional: core boxloss never imports them, and a missing Ultralytics is a one-line hint."""

import importlib
import subprocess
import sys

import pytest


def test_core_never_imports_ultralytics():
    code = ("import sys, boxloss, boxloss.boxes, boxloss.model, boxloss.engine, boxloss.cli.compare; "
            "print(sorted(m for m in sys.modules if m.startswith(('ultralytics', 'boxloss.integrations'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _hide_ultralytics(monkeypatch):
    """Make `import ultralytics...` raise ImportError, as when the package is not installed."""
    for name in [m for m in sys.modules if m == "ultralytics" or m.startswith("ultralytics.")] + ["ultralytics"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "boxloss.integrations.ultralytics", raising=False)


def test_missing_ultralytics_is_a_one_line_hint(monkeypatch):
    _hide_ultralytics(monkeypatch)
    with pytest.raises(ImportError) as err:
        importlib.import_module("boxloss.integrations.ultralytics")
    msg = str(err.value)
    assert "\n" not in msg and 'pip install -c constraints.txt -e ".[ultralytics]"' in msg


def test_cli_reports_missing_ultralytics_in_one_line(monkeypatch, capsys):
    sys.path.insert(0, "scripts")
    try:
        train_yolo = importlib.import_module("train_yolo")
    finally:
        sys.path.remove("scripts")
    _hide_ultralytics(monkeypatch)
    assert train_yolo.main(["--box-loss", "siou", "data=x.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and ".[ultralytics]" in err
