"""Letterbox geometry: where an image lands when resized to fit a canvas and padded to its size.

Predictions are made in letterboxed pixels; COCO evaluation needs them in the original image's
pixels. ``letterbox_params`` gives the per-axis scale and the padding; ``unletterbox_boxes`` undoes
them. The rounding matches albumentations' ``LongestMaxSize`` + ``PadIfNeeded(position="center")``,
which is what ``build_val_transforms`` uses, so the mapping back is exact (up to float rounding).
"""

import torch


def letterbox_params(orig_size, size) -> tuple[tuple[float, float], tuple[float, float]]:
    """Scale and padding of a centred letterbox from ``orig_size`` to ``size`` (both ``(h, w)``).

    The image is resized by ``r = min(size_h / h, size_w / w)`` to ``(round(h * r), round(w * r))``
    and padded evenly (the odd pixel goes to the bottom/right). Returns ``((scale_x, scale_y),
    (pad_x, pad_y))`` with the per-axis scale actually applied (``new_w / w``, ``new_h / h``) and
    the left/top padding, so that ``x_letterboxed = x_orig * scale_x + pad_x``. With
    ``size == orig_size`` this is the identity ``((1, 1), (0, 0))``.
    """
    h, w = (int(v) for v in orig_size)
    out_h, out_w = (int(v) for v in size)
    r = min(out_h / h, out_w / w)
    new_h, new_w = max(1, round(h * r)), max(1, round(w * r))
    pad_y, pad_x = max(0, out_h - new_h) // 2, max(0, out_w - new_w) // 2
    return (new_w / w, new_h / h), (float(pad_x), float(pad_y))


def unletterbox_boxes(boxes: torch.Tensor, scale, pad, orig_size=None) -> torch.Tensor:
    """Map xyxy boxes from letterboxed pixels back to original image pixels.

    Args:
        boxes: ``[..., 4]`` xyxy boxes in the letterboxed image.
        scale: ``(scale_x, scale_y)``, e.g. ``target["scale"]`` from ``CocoDetection``.
        pad: ``(pad_x, pad_y)``, e.g. ``target["pad"]``.
        orig_size: optional ``(h, w)`` of the original image; boxes are then clipped to it.

    Returns:
        ``[..., 4]`` xyxy boxes in original pixels, same dtype and device as ``boxes``.
    """
    scale = torch.as_tensor(scale, dtype=boxes.dtype, device=boxes.device).repeat(2)
    pad = torch.as_tensor(pad, dtype=boxes.dtype, device=boxes.device).repeat(2)
    out = (boxes - pad) / scale
    if orig_size is not None:
        h, w = (float(v) for v in orig_size)
        upper = torch.tensor([w, h, w, h], dtype=boxes.dtype, device=boxes.device)
        out = torch.minimum(out.clamp(min=0), upper)
    return out
