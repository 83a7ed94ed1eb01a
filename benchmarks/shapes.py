"""Named benchmark layers. The table lives in the package (pyconv/bench.py) so that the installed
`pyconv bench` command has it too; this module is the benchmarks' view of it."""
from pyconv.bench import CIFAR, IMAGENET, LECTURE, POOLS, SUITES, ZOO, ConvCase, PoolCase  # noqa: F401

CONV_CASES = LECTURE + CIFAR + IMAGENET
POOL_CASES = POOLS
# Every distinct conv layer of the six models of pyconv/zoo.py at batch 1 and 8 (`--suite zoo`).
ZOO_CASES = ZOO
