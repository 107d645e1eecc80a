"""Configs: YAML + overrides, validation with one-line errors, and the bundled config files."""

import glob

import pytest

from boxloss.engine import ConfigError, DEFAULTS, load_config, parse_override


@pytest.mark.parametrize("path", sorted(glob.glob("configs/*.yaml")))
def test_bundled_configs_are_valid(path):
    cfg = load_config(path)
    assert cfg["loss"]["box_loss"] == "ciou"


def test_overrides_are_parsed_as_yaml():
    cfg = load_config("configs/smoke.yaml", ["optim.lr=0.02", "model.scale_ranges=[48, 96]", "train.resume=null",
                                             "loss.weights.smooth_l1=0.5", "loss.args.ciou={gate_alpha: true}"])
    assert cfg["optim"]["lr"] == 0.02 and cfg["model"]["scale_ranges"] == [48, 96]
    assert cfg["loss"]["weights"]["smooth_l1"] == 0.5 and cfg["loss"]["weights"]["ciou"] == 1.0
    assert cfg["loss"]["args"]["ciou"] == {"gate_alpha": True}
    assert parse_override("a.b.c=1") == {"a": {"b": {"c": 1}}}


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lr=-1", "bad value optim.lr=-1; accepted: a number > 0"),
        ("optim.lrr=1", "unknown config key optim.lrr; accepted: optim.name, optim.lr"),
        ("optim.name=rmsprop", "accepted: sgd, adam, adamw"),
        ("schedule.name=linear", "accepted: none, step, multistep, exponential, cosine, cosine_restarts, plateau"),
        ("loss.box_loss=cioux", "bad value loss.box_loss='cioux'; accepted: .*ciou.*smooth_l1"),
        ("loss.weights.foo=1", "loss.weights.foo"),
        ("data.image_size=100", "a multiple of 32"),
        ("train.batch_size=2.5", "an integer >= 1"),
        ("train.amp=fp8", "accepted: none, bf16, fp16"),
        ("model.norm_groups=5", "a divisor of model.fpn_channels"),
        ("data.train_ann=a.json", "give all of train_ann, train_images, val_ann, val_images"),
        ("optim.lr", "not of the form section.key=value"),
    ],
)
def test_bad_values_are_one_line_errors(override, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config("configs/smoke.yaml", [override])
    assert "\n" not in str(err.value)


def test_missing_and_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(bad))


def test_defaults_are_valid():
    cfg = load_config()
    assert cfg == load_config(None, extra={}) and set(cfg) == set(DEFAULTS)
