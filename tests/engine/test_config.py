"""Configs: YAML + overrides, validation with one-line errors, and the bundled config files."""

import glob
import re

import pytest
import yaml

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


def test_the_defaults_are_the_recipe_of_default_yaml():
    """One meaning of "default": a command without --config trains configs/default.yaml's measured recipe."""
    assert load_config() == load_config("configs/default.yaml")


# What configs/smoke.yaml, quick.yaml and deepforest.yaml trained with when their results were measured
# (docs/results.md, the README's job, the tests): they set only some keys and inherit the rest from
# DEFAULTS, so a change of DEFAULTS must not reach them. These are the keys DEFAULTS changed when it
# became configs/default.yaml's recipe (SGD lr 0.01 wd 1e-4, 12 epochs of batch 16, eval every epoch).
MEASURED = {
    "configs/smoke.yaml": {"optim": {"name": "sgd", "lr": 0.01, "weight_decay": 1e-4},
                           "train": {"epochs": 2, "batch_size": 8, "eval_every": 1}},
    "configs/quick.yaml": {"optim": {"name": "adamw", "lr": 0.002, "weight_decay": 0.01},
                           "train": {"epochs": 8, "batch_size": 8, "eval_every": 2}},
    "configs/deepforest.yaml": {"optim": {"name": "adamw", "lr": 0.002, "weight_decay": 0.01},
                                "train": {"epochs": 60, "batch_size": 8, "eval_every": 10}},
}


@pytest.mark.parametrize("path", sorted(MEASURED))
def test_partial_configs_keep_the_recipe_they_were_measured_with(path):
    cfg = load_config(path)
    for section, values in MEASURED[path].items():
        assert {k: cfg[section][k] for k in values} == values, section
    assert (cfg["optim"]["momentum"], cfg["optim"]["nesterov"], cfg["optim"]["betas"]) == (0.9, True, [0.9, 0.999])


def _protocol_defaults() -> dict:
    """``{key: value}`` from the "default" column of docs/protocol.md's config table, for the rows whose
    cell is a comma-separated YAML value per key (or one null for all of the row's keys)."""
    text = open("docs/protocol.md", encoding="utf-8").read()
    table = text.split("| key | default | meaning |", 1)[1].split("\n\n", 1)[0]
    out = {}
    for line in table.strip().splitlines()[1:]:
        key_cell, default_cell = (c.strip() for c in line.strip().strip("|").split(" | ")[:2])
        keys = re.findall(r"`([\w.]+)`", key_cell)
        if len(keys) != key_cell.count("`") // 2:
            continue  # e.g. data.synthetic.{train,val,size,seed}
        try:
            values = yaml.safe_load(f"[{default_cell}]")
        except yaml.YAMLError:
            continue
        values = values * len(keys) if values == [None] else values
        if len(values) == len(keys):
            # YAML 1.1 reads 1e-4 as a string
            out.update({k: float(v) if isinstance(v, str) and re.fullmatch(r"[\d.]+e-?\d+", v) else v
                        for k, v in zip(keys, values)})
    return out


def test_the_protocol_table_states_the_defaults():
    documented = _protocol_defaults()
    assert {"optim.name", "optim.lr", "optim.weight_decay", "train.epochs", "train.batch_size",
            "train.eval_every", "data.train_ann"} <= set(documented)
    for key, value in documented.items():
        section, name = key.split(".")
        assert DEFAULTS[section][name] == value, key
