"""float32 error of each conv algorithm against float64, on N(0, 1) data (README, "Algorithms").

    python benchmarks/winograd_error.py

Per layer: max |y - ref| / max |ref| and max |y - ref| / (|w| * |x|)(max), where ref is the
float64 im2col result on the same float32-representable data and (|w| * |x|) is the convolution
of the absolute values (the scale a rounding error of each product is relative to).
"""
import numpy as np

import pyconv.functional as F

LAYERS = [(8, 64, 56, 64), (4, 128, 28, 128), (2, 256, 28, 256), (1, 512, 14, 512),   # n, c, hw, k
          (128, 64, 32, 64), (8, 64, 112, 64)]  # long weight-gradient sums: 8192 and 6272 tiles


def errors(direction, algo, x, w, gy):
    if direction == "fwd":
        run = lambda a, b, algo: F.conv2d(a, b, padding=1, algo=algo)  # noqa: E731
        ref, scale = run(x, w, "im2col"), run(np.abs(x), np.abs(w), "im2col")
        got = run(x.astype("f4"), w.astype("f4"), algo)
    elif direction == "bwd_data":
        run = lambda a, b, algo: F.conv2d_grad_input(a, b, x.shape, padding=1, algo=algo)  # noqa: E731
        ref, scale = run(gy, w, "im2col"), run(np.abs(gy), np.abs(w), "im2col")
        got = run(gy.astype("f4"), w.astype("f4"), algo)
    else:
        run = lambda a, b, algo: F.conv2d_grad_weight(a, b, w.shape, padding=1, algo=algo)  # noqa: E731
        ref, scale = run(x, gy, "im2col"), run(np.abs(x), np.abs(gy), "im2col")
        got = run(x.astype("f4"), gy.astype("f4"), algo)
    err = np.abs(got - ref)
    return err.max() / np.abs(ref).max(), (err / scale).max()


def main():
    rng = np.random.default_rng(0)
    print(f"{'layer':22} {'dir':9} {'algo':9} {'err/max|ref|':>13} {'err/(|w|*|x|)':>14}")
    for n, c, hw, k in LAYERS:
        x = rng.standard_normal((n, c, hw, hw)).astype("f4").astype("f8")
        w = rng.standard_normal((k, c, 3, 3)).astype("f4").astype("f8")
        gy = rng.standard_normal((n, k, hw, hw)).astype("f4").astype("f8")
        for direction in ("fwd", "bwd_data", "bwd_weight"):
            for algo in ("im2col", "winograd"):
                rel, scaled = errors(direction, algo, x, w, gy)
                print(f"{n}x{c}x{hw}x{hw} k{k:<6} {direction:9} {algo:9} {rel:13.2e} {scaled:14.2e}")


if __name__ == "__main__":
    main()
