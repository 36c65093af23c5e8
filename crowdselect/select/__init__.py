"""The selection phase: pure metrics, normalisation, k-means and quota math, and the Ray Data `select` job."""
