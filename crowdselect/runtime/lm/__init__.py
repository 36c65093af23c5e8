"""Language-model plumbing every phase's model calls go through: loading, chat encoding, token budgets,
micro-batches, HF generation, direct vLLM use, and what the ray.data.llm stages share (`ray_llm.py`)."""
