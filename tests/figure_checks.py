"""Checks on rendered matplotlib figures shared by the report and cohort-figure tests."""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.text import Text


def overlapping_texts(figure: Figure) -> list[tuple[str, str]]:
    """Pairs of visible texts within one axes (labels, annotations, tick labels) whose boxes intersect."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    clashes = []
    for ax in figure.axes:
        texts = [t for t in ax.findobj(Text) if t.get_visible() and t.get_text().strip() and t.axes is ax]
        boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
        for i, (a, box_a) in enumerate(boxes):
            for b, box_b in boxes[i + 1 :]:
                if box_a.overlaps(box_b) and box_a.width > 0 and box_b.width > 0:
                    clashes.append((a, b))
    return clashes
