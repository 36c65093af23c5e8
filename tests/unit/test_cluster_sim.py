"""bench/cluster_sim.py: the one-after-another replay is docs/scaling.md's wall-time model, and packing never
loses to it (a coarse sizing grid keeps this fast)."""

import pytest

from bench import cluster_sim


def test_sequential_is_the_docs_model_and_packed_is_never_slower(monkeypatch):
    monkeypatch.setattr(cluster_sim, "GRID", 16)
    one, sixteen = cluster_sim.curve([1, 16])
    # docs/scaling.md: wall(N) = 245 GPU-hours / (8N) + 1.7 h of start-ups, in sequence
    assert one["sequential"]["wall_h"] == pytest.approx(245 / 8 + 1.7, abs=0.2)
    assert sixteen["sequential"]["wall_h"] == pytest.approx(245 / 128 + 1.7, abs=0.1)
    for row in (one, sixteen):
        assert row["packed"]["wall_h"] <= row["sequential"]["wall_h"] + 1e-9
    assert sixteen["packed"]["efficiency"] > sixteen["sequential"]["efficiency"] + 0.15
    assert "| 16 (128) |" in cluster_sim.table([one, sixteen])
