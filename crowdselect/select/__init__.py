"""The selection phase: pure metrics, normalisation, k-means and quota math, eval decontamination, semantic
dedup, the dataset card, and the Ray Data `select` job."""
