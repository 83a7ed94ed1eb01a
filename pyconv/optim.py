"""Optimisers (SGD, Adam) and learning-rate schedules, with torch.optim's update rules."""
import math

import numpy as np

from .tensor import Tensor

__all__ = ["Optimizer", "SGD", "Adam", "StepLR", "CosineAnnealingLR"]


class Optimizer:
    def __init__(self, params, defaults):
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        for i, p in enumerate(params):
            if not isinstance(p, Tensor) or p.dtype.kind != "f":
                raise TypeError(f"{type(self).__name__}: parameter {i} is not a floating-point Tensor")
        self.params = params
        self.defaults = dict(defaults)
        self.lr = defaults["lr"]
        self.state = [dict() for _ in params]
        self.step_count = 0

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad[...] = 0

    def step(self):
        self.step_count += 1
        for p, st in zip(self.params, self.state):
            if p.grad is not None:
                self._update(p, p.grad, st)

    def _update(self, p, g, state):  # pragma: no cover - abstract
        raise NotImplementedError

    def state_dict(self):
        """Flat name -> ndarray mapping (numbers as 0-d arrays), storable in an .npz."""
        out = {"lr": np.asarray(self.lr), "step_count": np.asarray(self.step_count)}
        for i, st in enumerate(self.state):
            for k, v in st.items():
                out[f"{i}.{k}"] = np.asarray(v)
        return out

    def load_state_dict(self, state):
        self.lr = float(state["lr"])
        self.step_count = int(state["step_count"])
        self.state = [dict() for _ in self.params]
        for key, v in state.items():
            if key in ("lr", "step_count"):
                continue
            i, name = key.split(".", 1)
            i = int(i)
            if i >= len(self.params):
                raise ValueError(f"optimizer state has an entry for parameter {i}, but the optimizer has "
                                 f"{len(self.params)} parameters")
            if name == "step":
                self.state[i][name] = int(v)
                continue
            v = np.array(v, dtype=self.params[i].dtype)  # a fresh array: updated in place by step()
            if v.shape != self.params[i].shape:
                raise ValueError(f"optimizer state '{key}' has shape {v.shape}, parameter {i} has {self.params[i].shape}")
            self.state[i][name] = v
        return self


class SGD(Optimizer):
    """SGD with optional momentum (heavy-ball or Nesterov), dampening and L2 weight decay."""

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: lr, momentum and weight_decay must be >= 0, got {lr}, {momentum}, {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov needs momentum > 0 and dampening = 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov))

    def step(self):
        # The per-parameter rule inlined with the hyper-parameters read once: small models are
        # dominated by this loop's Python overhead.
        self.step_count += 1
        d = self.defaults
        wd, mom, damp, nesterov = d["weight_decay"], d["momentum"], d["dampening"], d["nesterov"]
        for p, state in zip(self.params, self.state):
            g = p.grad
            if g is None:
                continue
            data = p.data
            if wd:
                g = g + wd * data
            if mom:
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = np.array(g, copy=True)
                else:
                    buf *= mom
                    if damp:
                        buf += (1 - damp) * g
                    else:
                        buf += g  # (1 - 0) * g is g exactly
                g = g + mom * buf if nesterov else buf
            data -= data.dtype.type(self.lr) * g


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction and L2 weight decay, as torch.optim.Adam."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        if lr < 0 or eps < 0 or weight_decay < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"Adam: invalid lr={lr}, betas={betas}, eps={eps} or weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def _update(self, p, g, state):
        d = self.defaults
        b1, b2 = d["betas"]
        if d["weight_decay"]:
            g = g + d["weight_decay"] * p.data
        if "exp_avg" not in state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(p.data)
            state["exp_avg_sq"] = np.zeros_like(p.data)
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        step_size = self.lr / (1 - b1**t)
        denom = np.sqrt(v) / math.sqrt(1 - b2**t) + d["eps"]
        p.data -= (step_size * m / denom).astype(p.dtype, copy=False)


class _Schedule:
    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.epoch = 0

    def step(self):
        self.epoch += 1
        self.optimizer.lr = self.lr_at(self.epoch)

    def get_last_lr(self):
        return [self.optimizer.lr]

    def state_dict(self):
        """The schedule's position (JSON-serialisable); the optimizer's lr is in its own state."""
        return {"epoch": self.epoch, "base_lr": self.base_lr}

    def load_state_dict(self, state):
        self.epoch, self.base_lr = int(state["epoch"]), float(state["base_lr"])
        return self


class StepLR(_Schedule):
    """lr = base_lr * gamma ** (epoch // step_size)."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        super().__init__(optimizer)
        if step_size < 1:
            raise ValueError(f"StepLR: step_size must be >= 1, got {step_size}")
        self.step_size, self.gamma = step_size, gamma

    def lr_at(self, epoch):
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class CosineAnnealingLR(_Schedule):
    """lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2."""

    def __init__(self, optimizer, T_max, eta_min=0.0):
        super().__init__(optimizer)
        if T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be >= 1, got {T_max}")
        self.T_max, self.eta_min = T_max, eta_min

    def lr_at(self, epoch):
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2
