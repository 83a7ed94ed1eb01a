"""The ``pyconv`` command line (also ``python -m pyconv``)."""
import argparse
import platform
import sys

import numpy as np

from . import _core, _runtime


def _info(args):
    build = _core.build_info()
    openmp = f"yes (OpenMP {build['openmp']})" if _core.have_openmp() else "no (single-threaded build)"
    rows = [
        ("pyconv", _core.__version__),
        ("python", f"{platform.python_version()} ({platform.machine()})"),
        ("numpy", np.__version__),
        ("compiler", build["compiler"]),
        ("openmp", openmp),
        ("threads", str(_runtime.get_num_threads())),
        ("cpu features", " ".join(_core.cpu_features()) or "(none detected)"),
        ("cpu isa", _runtime.cpu_isa()),
        ("compiled isas", " ".join(_runtime.compiled_isas())),
        ("active isa", f"{_runtime.get_max_isa()} (cap: PYCONV_MAX_ISA / pyconv.set_max_isa)"),
        ("workspace limit", f"{_runtime.get_workspace_limit() / 2**20:g} MiB"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print("kernels:")
    for name in _runtime.kernels():
        print(f"  {name}")
    return 0


def _bench(args):
    from . import bench

    cases = bench.SUITES[args.suite]
    if args.case:
        cases = [c for c in bench.SUITES["all"] if any(sel in c.name for sel in args.case)]
        if not cases:
            raise ValueError(f"no benchmark case matches {args.case}; see `pyconv bench --list`")
    if args.list:
        for c in bench.SUITES["all"]:
            print(c.name)
        return 0
    threads = args.threads if args.threads is not None else _runtime.get_num_threads()
    print(f"pyconv bench: suite={args.suite} threads={threads} repeats={args.repeats} dtype={args.dtype}",
          flush=True)
    rows = bench.run(cases, threads=threads, repeats=args.repeats, algos=tuple(args.algo),
                     torch_compare=not args.no_torch, dtype=np.dtype(args.dtype),
                     progress=lambda name: print(f"  {name} ...", file=sys.stderr, flush=True))
    print(bench.format_table(rows))
    if args.json:
        meta = dict(threads=threads, repeats=args.repeats, dtype=args.dtype, isa=_runtime.get_max_isa(),
                    cases=bench.case_dicts(cases))
        bench.write_json(rows, args.json, meta)
        print(f"wrote {args.json}")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="pyconv", description="Fast CPU convolutions for numpy.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("info", help="version, compiler, CPU features, compiled kernels, threads")
    p.set_defaults(func=_info)

    p = sub.add_parser("bench", help="time conv algorithms side by side (and torch, if installed)")
    p.add_argument("--suite", choices=["quick", "lecture", "cifar", "imagenet", "pool", "all"], default="quick")
    p.add_argument("--case", action="append", help="run only cases whose name contains this (repeatable)")
    p.add_argument("--list", action="store_true", help="list the case names and exit")
    p.add_argument("--threads", type=int, default=None, help="threads for pyconv and torch (default: current)")
    p.add_argument("--repeats", type=int, default=7, help="timed repeats per case; the median is reported")
    p.add_argument("--algo", nargs="+", default=["direct", "im2col"], choices=["auto", "direct", "im2col"])
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--no-torch", action="store_true", help="do not time torch even if importable")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    p.set_defaults(func=_bench)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError) as exc:
        print(f"pyconv {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
