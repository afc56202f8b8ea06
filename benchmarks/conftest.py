"""Benchmark settings. CONVLAB_BENCH_SMALL=1 (set by CI) keeps only the smallest shapes of each
suite, so that every benchmark body runs once and checks its result without timing."""
import os

SMALL = os.environ.get("CONVLAB_BENCH_SMALL") == "1"


def shapes(full, small):
    """The shapes a suite runs: ``small`` under CI, ``full`` otherwise."""
    return small if SMALL else full
