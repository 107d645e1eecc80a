"""Letterbox geometry and the mapping of boxes back to original image pixels."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from boxloss.data import build_val_transforms, letterbox_params, unletterbox_boxes


@pytest.mark.parametrize(
    "orig, size, scale, pad",
    [
        ((240, 320), (320, 320), (1.0, 1.0), (0.0, 40.0)),  # landscape: pad top/bottom
        ((320, 240), (320, 320), (1.0, 1.0), (40.0, 0.0)),  # portrait: pad left/right
        ((100, 200), (320, 320), (1.6, 1.6), (0.0, 80.0)),  # upscale
        ((101, 203), (320, 320), (320 / 203, 159 / 101), (0.0, 80.0)),  # 159.2 rounds to 159, odd pad
        ((480, 640), (480, 640), (1.0, 1.0), (0.0, 0.0)),  # no resize: identity
    ],
)
def test_letterbox_params(orig, size, scale, pad):
    got_scale, got_pad = letterbox_params(orig, size)
    assert got_scale == pytest.approx(scale) and got_pad == pad


def test_unletterbox_by_hand():
    boxes = torch.tensor([[16.0, 96.0, 176.0, 144.0], [-5.0, 70.0, 400.0, 90.0]])
    out = unletterbox_boxes(boxes, (1.6, 1.6), (0.0, 80.0))
    assert torch.allclose(out, torch.tensor([[10.0, 10.0, 110.0, 40.0], [-3.125, -6.25, 250.0, 6.25]]))
    clipped = unletterbox_boxes(
        boxes, torch.tensor([1.6, 1.6]), torch.tensor([0.0, 80.0]), orig_size=(100, 200)
    )
    assert torch.allclose(clipped[1], torch.tensor([0.0, 0.0, 200.0, 6.25]))
    assert unletterbox_boxes(boxes.double(), (1.6, 1.6), (0.0, 80.0)).dtype == torch.float64


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    h=st.integers(8, 400),
    w=st.integers(8, 400),
    size=st.sampled_from([64, 96, 320]),
    frac=st.tuples(*[st.floats(0.0, 0.45)] * 2, *[st.floats(0.55, 1.0)] * 2),
)
def test_val_transform_then_unletterbox_is_identity(h, w, size, frac):
    """Push a box through the real albumentations letterbox and map it back: same box."""
    x1, y1, x2, y2 = frac[0] * w, frac[1] * h, frac[2] * w, frac[3] * h
    out = build_val_transforms(size)(
        image=np.zeros((h, w, 3), np.uint8), bboxes=np.array([[x1, y1, x2 - x1, y2 - y1]]), indices=[0]
    )
    assert out["image"].shape == (size, size, 3)
    if len(out["bboxes"]) == 0:  # shrunk under 1 px: dropped, nothing to map back
        scale, _ = letterbox_params((h, w), (size, size))
        assert min((x2 - x1) * scale[0], (y2 - y1) * scale[1]) < 1.0 + 1e-4
        return
    bx, by, bw, bh = (float(v) for v in out["bboxes"][0])
    scale, pad = letterbox_params((h, w), (size, size))
    back = unletterbox_boxes(torch.tensor([[bx, by, bx + bw, by + bh]], dtype=torch.float64), scale, pad)
    assert torch.allclose(back, torch.tensor([[x1, y1, x2, y2]], dtype=torch.float64), atol=1e-3)
