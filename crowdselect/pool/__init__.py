"""Instruction pools (plain, ShareGPT, Alpaca, messages): read with FILE:LINE accounting and stable ids."""
