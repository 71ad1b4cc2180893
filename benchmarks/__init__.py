"""Ostinato's benchmarks: one module per measurement, run together by ``ostinato bench``."""
