"""Data-parallel training of pyconv's own nn across processes, through ``torch.distributed``.

``torchrun --nproc_per_node N -m pyconv train ...`` (or ``python -m torch.distributed.run``, and
``--nnodes`` for several machines) starts N copies of the run. Every process draws the same
shuffled order and the same augmentation (one seed), takes its contiguous share of each batch,
and after the backward pass the gradients are summed across processes in one all-reduce over
gloo (numpy buffers shared with torch, no copies), each weighted by its share of the batch: the
step is the one a single process takes on the whole batch, up to the order of float additions.
Loss, accuracy and the stop flag (Ctrl-C, SIGTERM) ride in the same all-reduce, so every process
stops at the same batch. BatchNorm normalises with each process's own batch statistics (as DDP
does without SyncBatchNorm); running statistics are averaged after every epoch. Rank 0 writes
the outputs; the others print nothing but errors. torch is needed only here.
"""
import os

import numpy as np


class DistributedError(ValueError):
    """A data-parallel run that cannot start (reported in one line by the CLI)."""


def world_size():
    """``WORLD_SIZE`` as torchrun sets it (1 without it)."""
    try:
        return int(os.environ.get("WORLD_SIZE") or 1)
    except ValueError:
        raise ValueError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer (torchrun sets it)") from None


def from_environment():
    """The process group torchrun describes (``WORLD_SIZE`` > 1), joined; else None."""
    return Group.join() if world_size() > 1 else None


class Group:
    """One process of a data-parallel run: ``rank`` of ``world``."""

    def __init__(self, dist, torch):
        self._dist, self._torch = dist, torch
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self._buf = None

    @classmethod
    def join(cls):
        try:
            import torch
            import torch.distributed as dist
        except ImportError:
            raise DistributedError("a data-parallel run (WORLD_SIZE > 1: started by torchrun) needs torch for its "
                                   "communication: pip install 'pyconv[torch]'") from None
        if not dist.is_available():
            raise DistributedError("this torch build has no torch.distributed")
        if not dist.is_initialized():
            missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
            if missing:
                raise DistributedError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {', '.join(missing)} not set: "
                                       "start data-parallel runs with torchrun --nproc_per_node N -m pyconv train ...")
            dist.init_process_group("gloo")
        return cls(dist, torch)

    def close(self):
        if self._dist.is_initialized():
            self._dist.destroy_process_group()

    def describe(self):
        return f"data-parallel over {self.world} processes (this is rank {self.rank}; rank 0 writes the outputs)"

    # ------------------------------------------------------------------ collectives
    def _allreduce(self, a):
        self._dist.all_reduce(self._torch.from_numpy(a))  # in place: the tensor shares a's memory

    def shard(self, n):
        """This process's contiguous share of ``range(n)`` (shares differ by at most one)."""
        return slice(n * self.rank // self.world, n * (self.rank + 1) // self.world)

    def sum(self, values):
        """Element-wise sum across processes of a few numbers (float64)."""
        a = np.array(values, np.float64)
        self._allreduce(a)
        return a

    def sync_model(self, model):
        """Every process takes rank 0's parameters and floating buffers (counters agree anyway)."""
        for p in model.parameters():
            self._broadcast(p.data)
        for _, b in model.named_buffers():
            if isinstance(b, np.ndarray) and np.issubdtype(b.dtype, np.floating):
                self._broadcast(b)

    def _broadcast(self, a):
        if not (isinstance(a, np.ndarray) and a.flags.c_contiguous and a.flags.writeable):
            raise DistributedError("parameters and buffers must be writable contiguous numpy arrays to be shared")
        self._dist.broadcast(self._torch.from_numpy(a), 0)

    def reduce_step(self, params, n_local, n_batch, loss_sum, correct, stop):
        """Replaces each parameter's gradient (of this process's mean loss) by the whole batch's,
        and sums the step's statistics: returns (mean loss, correct, any process asked to stop)."""
        sizes = [p.data.size for p in params]
        dtype = np.result_type(*[p.data.dtype for p in params]) if params else np.float32
        total = sum(sizes) + 3
        if self._buf is None or self._buf.size != total or self._buf.dtype != dtype:
            self._buf = np.empty(total, dtype)
        buf, w, at = self._buf, n_local / n_batch, 0
        for p, k in zip(params, sizes):
            if p.grad is None or n_local == 0:
                buf[at:at + k] = 0
            else:
                np.multiply(p.grad.reshape(-1), w, out=buf[at:at + k])
            at += k
        buf[at:] = (loss_sum, correct, 1.0 if stop else 0.0)
        self._allreduce(buf)
        at = 0
        for p, k in zip(params, sizes):
            p.grad = buf[at:at + k].reshape(p.data.shape).astype(p.data.dtype, copy=True)
            at += k
        loss, correct, stop = buf[at:]
        return float(loss) / n_batch, int(round(float(correct))), bool(stop > 0)

    def average_buffers(self, model):
        """BatchNorm's running statistics (floating buffers) averaged across processes."""
        for _, b in model.named_buffers():
            if isinstance(b, np.ndarray) and np.issubdtype(b.dtype, np.floating):
                self._allreduce(b)
                b /= self.world
