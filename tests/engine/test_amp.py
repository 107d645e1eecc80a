"""train.amp: which autocast dtype each device gets, and bf16 training on the CPU end to end."""

import warnings

import pytest
import torch

import boxloss.engine.amp as amp_mod
from boxloss.engine import load_checkpoint, merge_config, train
from boxloss.engine.amp import autocast_dtype

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_native_bf16_means_avx512_bf16_or_amx(monkeypatch):
    # Not torch.ops.mkldnn._is_mkldnn_bf16_supported: that is true on every AVX512 CPU (emulated bf16).
    for avx512_bf16, amx, expected in ((False, False, False), (True, False, True), (False, True, True)):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert amp_mod.cpu_has_native_bf16() is expected


def test_cuda_gets_the_dtype_asked_for():
    assert autocast_dtype("none", CUDA) is None
    assert autocast_dtype("bf16", CUDA) is torch.bfloat16
    assert autocast_dtype("fp16", CUDA) is torch.float16


def test_cpu_bf16_is_used_silently_on_a_cpu_with_native_bf16(monkeypatch):
    monkeypatch.setattr(amp_mod, "cpu_has_native_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert autocast_dtype("bf16", CPU) is torch.bfloat16
        assert autocast_dtype("none", CPU) is None


def test_cpu_bf16_warns_where_it_is_emulated(monkeypatch):
    monkeypatch.setattr(amp_mod, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(UserWarning, match="no native bfloat16.*train.amp=none"):
        assert autocast_dtype("bf16", CPU) is torch.bfloat16


def test_cpu_fp16_falls_back_to_fp32_with_a_warning():
    with pytest.warns(UserWarning, match="train.amp=fp16.*fp32 on cpu"):
        assert autocast_dtype("fp16", CPU) is None


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="accepted: none, bf16, fp16"):
        autocast_dtype("fp8", CPU)


def test_bf16_training_on_cpu_runs_in_bf16_and_keeps_fp32_weights(tiny_cfg, monkeypatch):
    seen = []
    conv_forward = torch.nn.Conv2d.forward

    def recording_forward(self, x):
        out = conv_forward(self, x)
        seen.append(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.Conv2d, "forward", recording_forward)
    cfg = merge_config(tiny_cfg, {"train": {"amp": "bf16", "epochs": 1}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the emulation warning, on CPUs without native bf16
        result = train(cfg)
    assert torch.bfloat16 in seen  # the convolutions ran under bf16 autocast
    ckpt = load_checkpoint(cfg["train"]["output_dir"] + "/checkpoint_last.pt")
    assert all(v.dtype == torch.float32 for v in ckpt["model"].values() if v.is_floating_point())
    assert ckpt["precision"] == "bf16" and ckpt["scaler"] == {}  # no GradScaler outside fp16
    assert result["nonfinite_steps"] == 0 and 0.0 <= result["stats"]["AP"] <= 1.0
    assert all(v == -1 or 0.0 <= v <= 1.0 for v in result["stats"].values())  # 12 valid COCO stats


def test_resume_in_another_precision_is_refused(tiny_cfg):
    cfg = merge_config(tiny_cfg, {"train": {"amp": "bf16", "epochs": 1, "eval_every": 0}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train(cfg)
    with pytest.raises(ValueError, match="trained in bf16 and this run would train in fp32"):
        train(merge_config(cfg, {"train": {"epochs": 2, "resume": "last", "amp": "none"}}))
    # (resuming in the same precision is exact: tests/engine/test_train.py, the resume test, amp=bf16)


def test_head_predictions_are_fp32_under_bf16_autocast():
    from boxloss.model.head import FCOSHead

    head = FCOSHead(16, num_classes=3, num_levels=2, num_convs=1, norm_groups=4)
    feats = [torch.randn(2, 16, 8, 8), torch.randn(2, 16, 4, 4)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        tower = head.box_tower(feats[0])
        outputs = head(feats)
    assert tower.dtype == torch.bfloat16  # the towers do run in bf16 ...
    for cls, box, quality in outputs:  # ... and the predictions in fp32
        assert cls.dtype == box.dtype == quality.dtype == torch.float32
    with torch.no_grad():
        reference = head(feats)
    for out, ref in zip(outputs, reference):
        for a, b in zip(out, ref):
            torch.testing.assert_close(a, b, atol=0.05, rtol=0.05)  # bf16 towers: close, not equal


def test_head_without_autocast_is_the_plain_fp32_computation():
    import torch.nn.functional as F

    from boxloss.model.head import FCOSHead

    torch.manual_seed(0)
    head = FCOSHead(16, num_classes=3, num_levels=1, num_convs=1, norm_groups=4)
    for conv in (head.cls_logits, head.box_pred, head.quality):
        torch.nn.init.normal_(conv.weight, std=0.5)  # away from the initial biases, so the convs matter
    x = torch.randn(2, 16, 8, 8)
    cls, box, quality = head([x])[0]
    c, b = head.cls_tower(x), head.box_tower(x)
    assert torch.equal(cls, head.cls_logits(c).permute(0, 2, 3, 1).reshape(2, 64, 3))
    assert torch.equal(box, F.relu(head.scales[0] * head.box_pred(b).permute(0, 2, 3, 1).reshape(2, 64, 4)))
    assert torch.equal(quality, head.quality(b).reshape(2, 64))
    assert box.std() > 0.1 and cls.std() > 0.1
