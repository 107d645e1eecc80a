"""Shared fixtures of the evaluation tests."""

import gzip
import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def real_run():
    """(ground truth, detections) of a real training run: the final detections of the smooth_l1 seed-0
    run of the default comparison on the synthetic val split (200 images, 921 boxes, 20 000 detections);
    ``fixtures/real_run.json.gz`` says where it came from."""
    doc = json.loads(gzip.decompress((FIXTURES / "real_run.json.gz").read_bytes()))
    return doc["gt"], doc["detections"]
