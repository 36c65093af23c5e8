"""Crowd tables (one row per instruction, one answer + reward per generator): read and assemble."""
