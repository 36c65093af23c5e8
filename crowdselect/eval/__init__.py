"""Evaluation of a student: MT-bench questions, answering on Ray, judging, report."""
