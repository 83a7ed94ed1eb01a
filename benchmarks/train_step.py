"""One training step (forward + backward + SGD momentum) of the same network in pyconv and in
PyTorch eager, weights copied, timed interleaved; prints the median times and the ratio.

    python benchmarks/train_step.py --threads 2 [--steps 25]

Networks: the CS231n browser demo (`convnetjs-cifar`, 3x32x32, batch 64), LeNet and digits-cnn on
the 8x8 digits (batch 32). Issue 4's target is torch / pyconv >= 1.5x.
"""
import argparse
import time

import numpy as np

import pyconv
from pyconv import models, nn, optim


def torch_twin(torch, model):
    """The torch.nn.Sequential with the same layers and weights as a pyconv Sequential."""
    tnn = torch.nn
    layers = []
    for m in model:
        if isinstance(m, nn.Conv2d):
            layers.append(tnn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                                     m.dilation, m.groups, m.bias is not None))
        elif isinstance(m, nn.Linear):
            layers.append(tnn.Linear(m.in_features, m.out_features, m.bias is not None))
        elif isinstance(m, nn.MaxPool2d):
            layers.append(tnn.MaxPool2d(m.kernel_size, m.stride, m.padding, m.dilation, ceil_mode=m.ceil_mode))
        elif isinstance(m, nn.ReLU):
            layers.append(tnn.ReLU())
        elif isinstance(m, nn.Flatten):
            layers.append(tnn.Flatten(m.start_dim, m.end_dim))
        else:
            raise TypeError(f"no torch twin for {type(m).__name__}")
    twin = tnn.Sequential(*layers)
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    return twin


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=25)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    pyconv.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    for name, shape, batch in (("convnetjs-cifar", (3, 32, 32), 64), ("lenet", (1, 8, 8), 32),
                               ("digits-cnn", (1, 8, 8), 32)):
        pyconv.manual_seed(0)
        model = models.build_model(name, shape, 10)
        twin = torch_twin(torch, model)
        x = rng.random((batch,) + shape, dtype=np.float32)
        y = rng.integers(0, 10, batch)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        topt = torch.optim.SGD(twin.parameters(), lr=0.01, momentum=0.9)
        loss_fn, tloss_fn = nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()
        times = {"pyconv": [], "torch": []}
        for step in range(args.steps + 5):
            t0 = time.perf_counter()
            loss = loss_fn(model(pyconv.Tensor(x)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            t1 = time.perf_counter()
            tloss = tloss_fn(twin(xt), yt)
            topt.zero_grad()
            tloss.backward()
            topt.step()
            t2 = time.perf_counter()
            if step >= 5:  # warm-up
                times["pyconv"].append(t1 - t0)
                times["torch"].append(t2 - t1)
        p, t = np.median(times["pyconv"]), np.median(times["torch"])
        print(f"{name:16s} batch {batch:3d}: pyconv {p * 1e3:8.3f} ms  torch {t * 1e3:8.3f} ms  "
              f"torch/pyconv {t / p:5.2f}")


if __name__ == "__main__":
    main()
