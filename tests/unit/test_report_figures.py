"""report.html's per-cluster quota chart: pool and selected rows on one axis, every bar labelled with its count."""

from __future__ import annotations

import numpy as np

from crowdselect.report import figures


def test_quota_chart_draws_pool_and_selected_on_one_axis_with_counts(monkeypatch):
    drawn = []
    monkeypatch.setattr(figures, "png_bytes", lambda fig, dpi=90: drawn.append(fig) or b"png")
    clusters = np.array([0] * 8 + [1] * 3)
    selected = np.array([True, True] + [False] * 6 + [True, False, False])
    assert figures.cluster_quotas(clusters, selected) == b"png"
    (ax,) = drawn[0].axes  # one axis: 2 selected is drawn a quarter as high as 8 in the pool
    heights = [p.get_height() for p in ax.patches]
    assert heights == [8, 3, 2, 1]
    assert sorted(t.get_text() for t in ax.texts) == ["1", "2", "3", "8"]
    figures.pyplot().close(drawn[0])
