"""Measure the original and the result on the same data, in one process: metrics, latency, size."""
