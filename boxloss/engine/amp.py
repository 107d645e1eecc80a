"""Which autocast dtype a run trains and evaluates in (``train.amp``), per device.

- CUDA: ``bf16`` or ``fp16`` (fp16 with a GradScaler, set up by the trainer).
- CPU: ``bf16`` autocast runs convolutions and matrix products in bfloat16 through oneDNN. On CPUs
  with native bfloat16 (AVX512-BF16 or AMX, e.g. Xeon Sapphire Rapids and later) that is ~1.8x the
  fp32 training throughput of the default detector (docs/benchmarks.md); without it bfloat16 is
  emulated and slower than fp32, so the run warns. ``fp16`` on CPU falls back to fp32 with a warning.

Box losses, the focal loss and the assignment always run in fp32: the detector casts the head outputs
to float before computing its losses.
"""

from __future__ import annotations

import warnings

import torch

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """True when oneDNN can run bfloat16 natively on this CPU (AVX512-BF16 / AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.amp`` on ``device`` (None: fp32), warning where it falls back."""
    if amp not in AMP_DTYPES:
        raise ValueError(f"unknown train.amp {amp!r}; accepted: {', '.join(AMP_DTYPES)}")
    if amp == "none" or device.type == "cuda":
        return AMP_DTYPES[amp]
    if device.type == "cpu" and amp == "bf16":
        if not cpu_has_native_bf16():
            warnings.warn("train.amp=bf16: this CPU has no native bfloat16 (AVX512-BF16 or AMX), so bf16 autocast "
                          "is emulated and slower than fp32; set train.amp=none", stacklevel=2)
        return torch.bfloat16
    warnings.warn(f"train.amp={amp} is supported on CUDA (bf16 also on CPU); training in fp32 on {device.type}",
                  stacklevel=2)
    return None
