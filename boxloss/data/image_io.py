"""Reading one image for training: OpenCV decode, checks, BGR -> RGB."""

import os

import cv2
import numpy as np

from .errors import DatasetError


def read_image(path, expected_size=None, *, apply_exif: bool = True) -> np.ndarray:
    """Read an image file as an ``[H, W, 3]`` uint8 RGB array.

    Args:
        path: image file.
        expected_size: optional ``(height, width)`` from the annotation file; a mismatch is an error,
            because the boxes would land in the wrong place.
        apply_exif: rotate/flip by the file's EXIF orientation tag, as OpenCV, browsers and most
            annotation tools display it (default). ``False`` keeps the stored pixel order.

    Grayscale and 16-bit files are converted to 8-bit RGB; an alpha channel is dropped.
    Raises ``DatasetError`` naming the file when it is missing, cannot be decoded, or has the wrong
    size. Side swaps caused by EXIF rotation get their own hint; 180-degree rotations and mirrors
    keep the size and cannot be detected here.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DatasetError(
            f"{path}: image file not found. Check the image directory and the json's file_name."
        )
    flags = cv2.IMREAD_COLOR if apply_exif else cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imread(path, flags)
    if image is None:
        raise DatasetError(
            f"{path}: OpenCV cannot decode this file (corrupt, truncated or not an image). "
            "Replace or remove it."
        )
    if expected_size is not None:
        eh, ew = (int(v) for v in expected_size)
        h, w = image.shape[:2]
        if (h, w) != (eh, ew):
            message = f"{path}: image is {w}x{h} (width x height) but the annotation file says {ew}x{eh}."
            if (h, w) == (ew, eh):
                message += " Width and height are swapped: the file probably carries an EXIF rotation." + (
                    " If the boxes were drawn on the stored (unrotated) pixels, load with apply_exif=False;"
                    " otherwise re-export the images auto-oriented."
                    if apply_exif
                    else " If the boxes were drawn on the rotated view, load with apply_exif=True."
                )
            else:
                message += " Fix width/height in the json or replace the image."
            raise DatasetError(message)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
