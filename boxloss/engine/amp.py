"""Which autocast dtype a run trains and evaluates in (``train.amp``), per device.

- CUDA: ``bf16`` or ``fp16`` (fp16 with a GradScaler, set up by the trainer).
- CPU: ``bf16`` autocast runs convolutions and matrix products in bfloat16 through oneDNN, and what
  follows them (BatchNorm, GroupNorm, ReLU) takes their bf16 output. On CPUs with native bfloat16
  (AVX512-BF16 or AMX, e.g. Xeon Sapphire Rapids and later) the default detector's training step runs
  1.6-1.8x faster than in fp32 with one thread (docs/benchmarks.md); elsewhere bfloat16 is emulated and
  slower than fp32, so the run warns. ``fp16`` on CPU falls back to fp32 with a warning.

Under autocast the head's prediction convs, the losses and the target assignment still run in fp32
(``boxloss.model.head``; the detector casts the head outputs to float before its losses).
"""

from __future__ import annotations

import warnings

import torch

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """True when this CPU has bfloat16 instructions (AVX512-BF16 or AMX tiles), i.e. bf16 is not emulated.

    (``torch.ops.mkldnn._is_mkldnn_bf16_supported`` is not this test: it is true on any AVX512 CPU,
    where oneDNN emulates bf16.)
    """
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(bool(check()) for check in checks if check is not None)


def autocast_dtype(amp: str, device: torch.device, *, warn: bool = True) -> torch.dtype | None:
    """The autocast dtype for ``train.amp`` on ``device`` (None: fp32); warns (if ``warn``) where it
    falls back to fp32 or where bf16 is emulated."""
    if amp not in AMP_DTYPES:
        raise ValueError(f"unknown train.amp {amp!r}; accepted: {', '.join(AMP_DTYPES)}")
    if amp == "none" or device.type == "cuda":
        return AMP_DTYPES[amp]
    if device.type == "cpu" and amp == "bf16":
        if warn and not cpu_has_native_bf16():
            warnings.warn("train.amp=bf16: this CPU has no native bfloat16 (AVX512-BF16 or AMX), so bf16 autocast "
                          "is emulated and slower than fp32; set train.amp=none", stacklevel=2)
        return torch.bfloat16
    if warn:
        warnings.warn(f"train.amp={amp} is supported on CUDA (bf16 also on CPU); training in fp32 on {device.type}",
                      stacklevel=2)
    return None
