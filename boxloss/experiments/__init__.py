"""Experiments on the losses themselves, not evaluations of detectors.

- ``simulation``: the DIoU paper's simulation, in which plain gradient descent on each IoU-family loss
  moves 1,715,000 anchor boxes onto their targets (``scripts/simulate_regression.py``);
- ``loss_benchmark``: the speed and peak memory of each loss. It compares torchvision, the reference
  path and the fused kernels, eager and under ``torch.compile`` (``scripts/bench_losses.py``);
- ``weighted_benchmark``: the weighted / avg_factor call in one pass against the two-pass composition
  (``scripts/bench_losses.py --weighted``).

They use only the public API of ``boxloss.boxes`` (and ``_checks.finish_box_loss``, the two-pass
reduction), so they measure the code that users run. Importing
this package imports nothing; import the modules themselves.
"""
