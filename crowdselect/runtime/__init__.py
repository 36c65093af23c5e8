"""Where work runs: starting or joining Ray, Ray resource requests, model files (pkg: aliases, the weights rule),
the in-process executor, and `lm/`: every language-model call (loading, chat, micro-batches, HF, vLLM)."""
