"""Language-model plumbing every phase's model calls go through: loading, chat encoding, token budgets,
micro-batches, HF generation and direct vLLM use."""
