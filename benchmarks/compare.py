"""pyconv vs torch side by side, in one process, interleaved per case.

    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000 python benchmarks/compare.py --threads 2 --suite all

Same options as `pyconv bench` (this is the same runner).
"""
import sys

from pyconv.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench"] + sys.argv[1:]))
