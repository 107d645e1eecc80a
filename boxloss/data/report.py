"""The dataset report: what is in a COCO annotation file and what the checker had to fix."""

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

# Every fix the checker can make, by reason key (the keys of DatasetReport.fixes).
REASONS = {
    "clipped": "box partly outside the image -> clipped to the image",
    "outside": "box entirely outside the image -> skipped",
    "nonpositive_size": "zero or negative width/height -> skipped",
    "filled_area": "missing or invalid 'area' -> filled with the (clipped) box area",
    "filled_iscrowd": "missing 'iscrowd' -> filled with 0",
    "renumbered_id": "annotation id < 1 (COCOeval never matches id 0) -> all annotation ids shifted",
}
SKIP_REASONS = ("outside", "nonpositive_size")

# sqrt(w * h) bins in original pixels; 32 and 96 are COCO's small/medium/large limits.
SIZE_EDGES = (0, 8, 16, 32, 64, 96, 128, 256, 512)
# w / h bins, symmetric around 1 in log space.
ASPECT_EDGES = (1 / 8, 1 / 4, 1 / 2, 3 / 4, 4 / 3, 2, 4, 8)
ASPECT_LABELS = (
    "< 1:8",
    "1:8-1:4",
    "1:4-1:2",
    "1:2-3:4",
    "3:4-4:3",
    "4:3-2:1",
    "2:1-4:1",
    "4:1-8:1",
    "> 8:1",
)


@dataclass
class DatasetReport:
    """Result of ``check_coco_annotations``. ``format()`` gives the text report.

    Box statistics are over the kept, non-crowd boxes (the training targets), in original pixels.
    ``clean`` is the cleaned COCO dict (clipped boxes, filled fields, skipped boxes removed, crowd
    boxes kept) that ``CocoDetection`` indexes with pycocotools.
    """

    source: str
    num_images: int
    num_annotations: int  # in the file, before cleaning
    num_boxes: int  # kept, non-crowd
    num_crowd: int  # kept, crowd (evaluation only)
    num_images_without_boxes: int
    categories: dict  # category id -> name, the file's own ids
    class_counts: dict  # category id -> number of kept non-crowd boxes
    fixes: Counter = field(default_factory=Counter)  # reason key (see REASONS) -> count
    examples: dict = field(default_factory=dict)  # reason key -> first few "annotations[i] (id ...)"
    box_wh: np.ndarray = field(default=None, repr=False)  # [num_boxes, 2] widths and heights
    clean: dict = field(default=None, repr=False)

    @property
    def num_skipped(self) -> int:
        return sum(self.fixes[r] for r in SKIP_REASONS)

    def summary(self) -> str:
        """One line: counts and the problems fixed."""
        text = (
            f"{self.source}: {self.num_images} images, {self.num_annotations} annotations -> "
            f"{self.num_boxes} training boxes in {len(self.categories)} classes, {self.num_crowd} crowd, "
            f"{self.num_images_without_boxes} images without boxes"
        )
        if self.fixes:
            text += "; fixed: " + ", ".join(f"{k} {v}" for k, v in sorted(self.fixes.items()))
        return text

    def format(self) -> str:
        """The full text report: classes, box size and aspect-ratio histograms, problems by reason."""
        lines = [self.summary(), "", "boxes per class:"]
        peak = max(self.class_counts.values(), default=0)
        for cat_id, name in self.categories.items():
            n = self.class_counts.get(cat_id, 0)
            lines.append(f"  {cat_id:>6}  {name[:24]:<24} {n:>8}  {_bar(n, peak)}")
        wh = self.box_wh if self.box_wh is not None else np.zeros((0, 2))
        if len(wh):
            side = np.sqrt(wh[:, 0] * wh[:, 1])
            small, large = int((side < 32).sum()), int((side > 96).sum())
            lines += ["", f"box size sqrt(w*h) in pixels (COCO small < 32: {small}, large > 96: {large}):"]
            labels = [f"[{a}, {b})" for a, b in zip(SIZE_EDGES[:-1], SIZE_EDGES[1:])] + [
                f">= {SIZE_EDGES[-1]}"
            ]
            lines += _histogram(side, SIZE_EDGES[1:], labels)
            lines += ["", "aspect ratio w:h:"]
            lines += _histogram(wh[:, 0] / wh[:, 1], ASPECT_EDGES, ASPECT_LABELS)
        lines += ["", "problems fixed:" if self.fixes else "problems fixed: none"]
        for reason, n in sorted(self.fixes.items()):
            lines.append(f"  {n:>8}  {REASONS[reason]}")
            if self.examples.get(reason):
                lines.append(f"            e.g. {', '.join(self.examples[reason])}")
        return "\n".join(lines)


def _bar(n: int, peak: int, width: int = 40) -> str:
    return "#" * (round(width * n / peak) if peak else 0)


def _histogram(values: np.ndarray, inner_edges, labels) -> list[str]:
    """Text histogram; ``inner_edges`` split the values into ``len(labels)`` bins (right-open)."""
    counts = np.bincount(np.searchsorted(inner_edges, values, side="right"), minlength=len(labels))
    peak = int(counts.max(initial=0))
    return [f"  {label:>12} {int(n):>8}  {_bar(int(n), peak)}" for label, n in zip(labels, counts)]
