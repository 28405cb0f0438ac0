"""Benchmarks: measured side by side in one run, reported as tables, JSON and plots.

Benchmarks are not tests: they run at real sizes and take minutes. Each refuses
to report a speed for a backend that does not first match the reference.
"""
