"""crowdselect: choose instruction-tuning data with a crowd of LLMs (CrowdSelect, arXiv 2503.01836)."""

__version__ = "0.1.0"
