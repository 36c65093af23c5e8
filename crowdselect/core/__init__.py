"""Shared plumbing every phase uses: column names, user errors, config loading, storage, record readers."""
