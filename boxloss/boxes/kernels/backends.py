"""Which kernels run a tensor: the C++ library on CPU (``cpu.py``), Triton on CUDA (``triton_losses.py``).

Both backends expose the same launchers (``box_loss_forward``, ``box_loss_backward``; the CPU one also
``smooth_l1_forward`` / ``smooth_l1_backward``). ``why_unavailable`` says why no fused kernel can run
for a device and compute dtype (None when one can); it is a constant for ``torch.compile`` (marked as
``assume_constant_result`` does), so asking it inside a compiled function adds no graph break.

Testing hook: ``TRITON_ON_CPU`` routes CPU tensors to the Triton kernels (with ``TRITON_INTERPRET=1``
Triton's interpreter runs them on CPU); the Triton tests set it.
"""

from __future__ import annotations

import torch

TRITON_ON_CPU = False


_cpu_module = None


def cpu():
    """The C++ backend module (imported on first use; then a global read, as this runs on every call)."""
    global _cpu_module
    if _cpu_module is None:
        from . import cpu as module

        _cpu_module = module
    return _cpu_module


def triton():
    from . import triton_losses

    return triton_losses


def uses_triton(device: torch.device) -> bool:
    return device.type == "cuda" or (device.type == "cpu" and TRITON_ON_CPU)


def for_tensor(x: torch.Tensor):
    return triton() if uses_triton(x.device) else cpu()


def why_unavailable(device_type: str, dtype: torch.dtype, triton_on_cpu: bool = False) -> str | None:
    """None if a fused box-loss kernel can run for this device type and compute dtype, else the reason
    (builds the C++ library on first call)."""
    if device_type == "cuda" or (device_type == "cpu" and triton_on_cpu):
        return triton().unavailable_reason(dtype)
    if device_type == "cpu":
        if cpu().library() is None:
            return "the CPU kernel library could not be built (see the earlier warning)"
        return None
    return f"no fused kernel for device type {device_type!r}"


# What ``@torch.compiler.assume_constant_result`` does (it only sets this attribute), without importing
# torch._dynamo when boxloss.boxes is imported (that import takes ~1 s and pulls in sympy, numpy and
# triton; ``boxloss.boxes`` needs torch alone). tests/boxes/test_kernel_ops.py checks that a process
# whose first loss call is inside torch.compile(fullgraph=True) runs the fused kernel.
why_unavailable._dynamo_marked_constant = True
