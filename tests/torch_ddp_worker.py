"""One rank of tests/test_torch.py::test_ddp_two_processes (run as a script, not collected).

    python torch_ddp_worker.py RANK WORLD_SIZE STORE_FILE OUT_FILE

Builds the test's small model (seeded: the same weights on every rank), converts it, wraps it in
DistributedDataParallel over gloo, runs 3 SGD steps on this rank's half of a fixed batch and
saves the final parameters.
"""
import os
import sys

import torch
import torch.distributed as dist
from torch import nn

import pyconv.torch as pt


def model_and_data():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1, padding_mode="reflect"), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(8 * 2 * 2, 5)).double()
    x = torch.randn(8, 3, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 5, (8,))
    return model, x, y


def train(model, x, y, steps=3):
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def main():
    rank, world, store_file, out_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    torch.set_num_threads(1)
    store = dist.FileStore(store_file, world)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world)
    model, x, y = model_and_data()
    ddp = nn.parallel.DistributedDataParallel(pt.convert(model))
    shard = slice(rank * len(x) // world, (rank + 1) * len(x) // world)
    train(ddp, x[shard], y[shard])
    torch.save({k: v.detach().clone() for k, v in ddp.module.state_dict().items()}, out_file)
    assert pt.stats()["Conv2d"]["pyconv"] == 2 * 3 and pt.stats()["Conv2d"]["fallbacks"] == 0, pt.stats()
    # Both ranks done before either tears gloo down: a rank destroying its group while the other
    # still talks can abort ("terminate called without an active exception") on a loaded machine.
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
    # The results are saved: leave without the interpreter's teardown, where gloo's threads can
    # still abort the process ("terminate called without an active exception", seen under ASan).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
