"""The shape classes of the synthetic dataset, each drawn as a binary mask that fills a w x h patch.

A shape touches all four sides of its patch, so the patch is the shape's tight box. The masks are
drawn with OpenCV at sub-pixel precision (``shift``) and without anti-aliasing, so the same
arguments always give the same pixels.
"""

import cv2
import numpy as np

SHAPE_NAMES = ("rectangle", "ellipse", "triangle", "cross", "ring")

_SHIFT = 4  # OpenCV sub-pixel bits: coordinates are multiplied by 2**4
_ONE = 1 << _SHIFT


def _ellipse(mask: np.ndarray, shrink: float = 0.0) -> None:
    h, w = mask.shape
    center = (round((w - 1) / 2 * _ONE), round((h - 1) / 2 * _ONE))
    axes = (round((w - 1) / 2 * (1 - shrink) * _ONE), round((h - 1) / 2 * (1 - shrink) * _ONE))
    color = 0 if shrink else 1
    cv2.ellipse(mask, center, axes, 0, 0, 360, color, -1, cv2.LINE_8, _SHIFT)


def _triangle(mask: np.ndarray, direction: int) -> None:
    """Isosceles triangle whose apex points up, right, down or left (direction 0..3)."""
    h, w = mask.shape
    r, b, cx, cy = w - 1, h - 1, (w - 1) / 2, (h - 1) / 2
    points = {
        0: [(0, b), (r, b), (cx, 0)],
        1: [(0, 0), (0, b), (r, cy)],
        2: [(0, 0), (r, 0), (cx, b)],
        3: [(r, 0), (r, b), (0, cy)],
    }[direction]
    pts = np.round(np.array(points) * _ONE).astype(np.int32)
    cv2.fillPoly(mask, [pts], 1, cv2.LINE_8, _SHIFT)


def _cross(mask: np.ndarray, thickness: float) -> None:
    h, w = mask.shape
    tw, th = max(1, round(w * thickness)), max(1, round(h * thickness))
    x0, y0 = (w - tw) // 2, (h - th) // 2
    mask[:, x0 : x0 + tw] = 1
    mask[y0 : y0 + th, :] = 1


def shape_mask(kind: int, w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """Binary mask (uint8, 0/1) of shape ``[h, w]`` for shape class ``kind`` (index in SHAPE_NAMES)."""
    mask = np.zeros((h, w), np.uint8)
    name = SHAPE_NAMES[kind]
    if name == "rectangle":
        mask[:] = 1
    elif name == "ellipse":
        _ellipse(mask)
    elif name == "triangle":
        _triangle(mask, int(rng.integers(4)))
    elif name == "cross":
        _cross(mask, float(rng.uniform(0.22, 0.4)))
    elif name == "ring":
        _ellipse(mask)
        _ellipse(mask, shrink=float(rng.uniform(0.3, 0.5)))
    return mask
