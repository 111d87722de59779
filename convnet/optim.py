"""Optimisers and learning-rate schedules, kept apart from ``backward``.

An optimiser holds references to the live parameter arrays (``model.parameters()``) and
updates them in place from a dict of gradients under the same names
(``model.grads()``); backward never touches the parameters, so gradients can be checked
and inspected before any step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .kernels import sgd_update

__all__ = ["EMA", "SGD", "Adam", "CosineLR", "Optimizer", "StepLR"]


class Optimizer:
    """Base class: parameters by name and a learning rate ``lr``."""

    def __init__(self, params: Mapping[str, np.ndarray], lr: float) -> None:
        if not params:
            raise ValueError("params must not be empty")
        for name, p in params.items():
            if not isinstance(p, np.ndarray) or p.dtype not in (np.float32, np.float64):
                raise TypeError(f"parameter {name!r} must be a float32 or float64 ndarray")
        if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a positive number, got {lr!r}")
        self.params = dict(params)
        self.lr = float(lr)
        self.steps = 0

    #: Names of the attributes that hold one buffer per parameter (``{name: ndarray}``).
    _buffers: tuple[str, ...] = ()

    def state_dict(self) -> dict[str, Any]:
        """Everything a later step depends on, as copies: ``steps``, ``lr`` and the buffers.

        Returns
        -------
        dict
            ``{"steps": int, "lr": float, <buffer>: {parameter name: ndarray}, …}`` with
            the buffers of the optimiser (``velocity`` for :class:`SGD`, ``m`` and ``v``
            for :class:`Adam`); plain values and arrays only, so that it can be saved
            without pickling.
        """
        state: dict[str, Any] = {"steps": self.steps, "lr": self.lr}
        for buffer in self._buffers:
            state[buffer] = {k: v.copy() for k, v in getattr(self, buffer).items()}
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`, so that the next step is the one it would have made.

        Parameters
        ----------
        state : mapping
            As returned by :meth:`state_dict` of an optimiser of the same class over
            parameters of the same names and shapes.

        Raises
        ------
        ValueError
            If an entry is missing or has the wrong name, shape or value.
        """
        expected = {"steps", "lr", *self._buffers}
        if set(state) != expected:
            raise ValueError(
                f"{type(self).__name__} state must have the entries {sorted(expected)}, "
                f"got {sorted(state)}"
            )
        steps, lr = state["steps"], state["lr"]
        if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 0:
            raise ValueError(f"steps must be a whole number ≥ 0, got {steps!r}")
        # A schedule may have brought the rate down to 0 by the time the state was taken.
        if isinstance(lr, bool) or not isinstance(lr, int | float) or not 0 <= lr < math.inf:
            raise ValueError(f"lr must be a finite number ≥ 0, got {lr!r}")
        for buffer in self._buffers:
            own, new = getattr(self, buffer), state[buffer]
            if set(new) != set(own):
                raise ValueError(
                    f"{buffer} buffers are for the parameters {sorted(new)}, "
                    f"expected {sorted(own)}"
                )
            for name, value in new.items():
                value = np.asarray(value)
                if value.shape != own[name].shape or value.dtype != own[name].dtype:
                    raise ValueError(
                        f"{buffer} buffer {name!r} must be {own[name].dtype} of shape "
                        f"{own[name].shape}, got {value.dtype} of shape {value.shape}"
                    )
                if not np.isfinite(value).all():
                    raise ValueError(f"{buffer} buffer {name!r} contains NaN or infinity")
        for buffer in self._buffers:
            for name, value in state[buffer].items():
                getattr(self, buffer)[name][...] = value
        self.steps, self.lr = int(steps), float(lr)

    def _check(self, grads: Mapping[str, np.ndarray]) -> None:
        missing = set(self.params) - set(grads)
        if missing:
            raise ValueError(f"grads lacks {', '.join(sorted(missing))}")

    def step(self, grads: Mapping[str, np.ndarray]) -> None:  # pragma: no cover - abstract
        """Update every parameter in place from its gradient."""
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, Nesterov momentum and weight decay.

    With ``g = grad + weight_decay · p`` and velocity ``v ← momentum · v + g``:
    ``p ← p - lr · v`` (heavy ball), or ``p ← p - lr · (g + momentum · v)`` (Nesterov),
    the update PyTorch's ``torch.optim.SGD`` makes.

    Parameters
    ----------
    params : mapping of str to ndarray
        Live parameter arrays, updated in place.
    lr : float
        Learning rate.
    momentum : float
        In ``[0, 1)``.
    nesterov : bool
        Use Nesterov momentum (needs ``momentum > 0``).
    weight_decay : float
        L2 penalty coefficient, at least 0.

    Examples
    --------
    >>> p = {"w": np.array([1.0])}
    >>> SGD(p, lr=0.1).step({"w": np.array([2.0])})
    >>> p["w"]
    array([0.8])
    """

    _buffers = ("velocity",)

    def __init__(
        self,
        params: Mapping[str, np.ndarray],
        lr: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be at least 0, got {weight_decay}")
        if nesterov and momentum == 0:
            raise ValueError("nesterov needs momentum > 0")
        self.momentum, self.nesterov, self.weight_decay = momentum, nesterov, weight_decay
        self.velocity = {k: np.zeros_like(p) for k, p in self.params.items()}

    def step(self, grads: Mapping[str, np.ndarray]) -> None:
        """Apply one update from ``grads`` (same names and shapes as the parameters).

        A contiguous parameter with a gradient of its dtype and shape is updated in one
        compiled pass (:func:`convnet.kernels.sgd_update`, the same arithmetic bit for bit,
        docs/design.md §5.10); any other by the numpy passes below.
        """
        self._check(grads)
        for name, p in self.params.items():
            g = grads[name]
            v = self.velocity[name]
            if (
                isinstance(g, np.ndarray)
                and g.dtype == p.dtype
                and g.shape == p.shape
                and p.flags.c_contiguous
                and v.flags.c_contiguous
            ):
                t = p.dtype.type
                sgd_update(
                    p.reshape(-1),
                    np.ascontiguousarray(g).reshape(-1),
                    v.reshape(-1),
                    t(self.lr),
                    t(self.momentum),
                    t(self.weight_decay),
                    bool(self.weight_decay),
                    bool(self.momentum),
                    self.nesterov,
                )
                continue
            if self.weight_decay:
                g = g + p.dtype.type(self.weight_decay) * p
            if self.momentum:
                v *= p.dtype.type(self.momentum)
                v += g
                g = g + p.dtype.type(self.momentum) * v if self.nesterov else v
            p -= p.dtype.type(self.lr) * g
        self.steps += 1


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction and optional L2 weight decay.

    Parameters
    ----------
    params : mapping of str to ndarray
    lr : float
    betas : (float, float)
        Decay rates of the first and second moment estimates, each in ``[0, 1)``.
    eps : float
        Added to the denominator.
    weight_decay : float
        L2 penalty added to the gradient (as ``torch.optim.Adam``).
    """

    _buffers = ("m", "v")

    def __init__(
        self,
        params: Mapping[str, np.ndarray],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        if not all(0 <= b < 1 for b in betas) or len(betas) != 2:
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas}")
        if eps <= 0 or weight_decay < 0:
            raise ValueError("eps must be positive and weight_decay at least 0")
        self.betas, self.eps, self.weight_decay = tuple(betas), eps, weight_decay
        self.m = {k: np.zeros_like(p) for k, p in self.params.items()}
        self.v = {k: np.zeros_like(p) for k, p in self.params.items()}

    def step(self, grads: Mapping[str, np.ndarray]) -> None:
        """Apply one update from ``grads``."""
        self._check(grads)
        self.steps += 1
        b1, b2 = self.betas
        c1, c2 = 1 - b1**self.steps, 1 - b2**self.steps
        for name, p in self.params.items():
            t = p.dtype.type
            g = grads[name]
            if self.weight_decay:
                g = g + t(self.weight_decay) * p
            m, v = self.m[name], self.v[name]
            m *= t(b1)
            m += t(1 - b1) * g
            v *= t(b2)
            v += t(1 - b2) * (g * g)
            p -= t(self.lr / c1) * m / (np.sqrt(v / t(c2)) + t(self.eps))


class _Schedule:
    def __init__(self, optimizer: Optimizer) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError("optimizer must be an Optimizer")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.count = 0

    def state_dict(self) -> dict[str, int]:
        """The schedule's position, ``{"count": steps taken}``."""
        return {"count": self.count}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Return to a :meth:`state_dict`'s position and set the optimiser's rate to match."""
        count = state.get("count") if isinstance(state, Mapping) else None
        if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 0:
            raise ValueError(f"a schedule state needs a whole number count ≥ 0, got {count!r}")
        self.count = int(count)
        self.optimizer.lr = self.lr_at(self.count)

    def step(self) -> float:
        """Advance one step and set (and return) the optimiser's learning rate."""
        self.count += 1
        self.optimizer.lr = self.lr_at(self.count)
        return self.optimizer.lr

    def lr_at(self, count: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError


class StepLR(_Schedule):
    """Multiply the learning rate by ``gamma`` every ``step_size`` steps.

    Parameters
    ----------
    optimizer : Optimizer
    step_size : int
        Steps (epochs or iterations, whichever the caller counts) between decays.
    gamma : float
        Decay factor in ``(0, 1]``.
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        super().__init__(optimizer)
        if step_size < 1 or not 0 < gamma <= 1:
            raise ValueError("step_size must be ≥ 1 and gamma in (0, 1]")
        self.step_size, self.gamma = int(step_size), float(gamma)
        optimizer.lr = self.lr_at(0)

    def lr_at(self, count: int) -> float:
        return self.base_lr * self.gamma ** (count // self.step_size)


class CosineLR(_Schedule):
    """Linear warm-up, then cosine decay from the base rate to ``min_lr`` over ``total`` steps.

    Parameters
    ----------
    optimizer : Optimizer
    total : int
        Number of steps of the whole schedule (warm-up included).
    warmup : int
        Steps of linear warm-up from ``base_lr / warmup`` to ``base_lr``.
    min_lr : float
        Final learning rate.

    Examples
    --------
    >>> opt = SGD({"w": np.zeros(1)}, lr=1.0)
    >>> s = CosineLR(opt, total=4)
    >>> [round(s.step(), 3) for _ in range(4)]
    [0.854, 0.5, 0.146, 0.0]
    """

    def __init__(
        self, optimizer: Optimizer, total: int, warmup: int = 0, min_lr: float = 0.0
    ) -> None:
        super().__init__(optimizer)
        if total < 1 or not 0 <= warmup < total or min_lr < 0:
            raise ValueError("need total ≥ 1, 0 ≤ warmup < total and min_lr ≥ 0")
        self.total, self.warmup, self.min_lr = int(total), int(warmup), float(min_lr)
        optimizer.lr = self.lr_at(0)

    def lr_at(self, count: int) -> float:
        if count < self.warmup:
            return self.base_lr * (count + 1) / self.warmup
        t = min(1.0, (count - self.warmup) / (self.total - self.warmup))
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * t))


class EMA:
    """Exponential moving average of the parameters, with the start-up bias removed.

    After the ``t``-th :meth:`update` (made after each optimiser step) the average is

    ``a_t = Σ_{k=1..t} (1 - d) d^(t-k) w_k / (1 - d^t)``

    of the parameters ``w_1 … w_t`` seen after each step, with weights summing to one:
    the recurrence ``a_t = a_(t-1) + (1 - d) / (1 - d^t) · (w_t - a_(t-1))`` gives it
    with one buffer, ``a_1 = w_1`` (docs/design.md §5.12). Dividing by ``1 - d^t``, as
    Adam does for its moments, keeps the first steps' average from leaning towards the
    initial weights.

    Parameters
    ----------
    params : mapping of str to ndarray
        The live parameter arrays (read, never written).
    decay : float
        ``d`` in ``[0, 1)``; ``1 / (1 - d)`` steps is the average's time constant.

    Examples
    --------
    >>> p = {"w": np.array([0.0])}
    >>> ema = EMA(p, decay=0.5)
    >>> for value in (1.0, 2.0):
    ...     p["w"][...] = value
    ...     ema.update()
    >>> ema.average["w"]  # (0.5·1 + 1·2) / 1.5: w_1 weighs (1-d)·d, w_2 (1-d), over 1-d²
    array([1.66666667])
    """

    def __init__(self, params: Mapping[str, np.ndarray], decay: float) -> None:
        if not params:
            raise ValueError("params must not be empty")
        if not (isinstance(decay, int | float) and 0 <= decay < 1):
            raise ValueError(f"decay must be in [0, 1), got {decay!r}")
        self.params = dict(params)
        self.decay = float(decay)
        self.steps = 0
        self.average = {k: p.copy() for k, p in self.params.items()}

    def update(self) -> None:
        """Fold the parameters' present values into the average."""
        self.steps += 1
        # 1 - d^t in float64; (1 - d) / (1 - d^t) is 1 at the first step, exactly.
        if self.decay == 0:
            rate = 1.0
        else:
            rate = (1 - self.decay) / -math.expm1(self.steps * math.log(self.decay))
        for name, p in self.params.items():
            a = self.average[name]
            a += p.dtype.type(rate) * (p - a)

    def state_dict(self) -> dict[str, Any]:
        """``{"steps": int, "average": {name: ndarray}}``, as copies."""
        return {"steps": self.steps, "average": {k: v.copy() for k, v in self.average.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` of an average over parameters of the same names.

        Raises
        ------
        ValueError
            If an entry is missing or has the wrong name, shape, dtype or value; nothing is
            changed then.
        """
        if not isinstance(state, Mapping) or set(state) != {"steps", "average"}:
            raise ValueError("an EMA state must have the entries ['average', 'steps']")
        steps, average = state["steps"], state["average"]
        if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 0:
            raise ValueError(f"steps must be a whole number ≥ 0, got {steps!r}")
        if not isinstance(average, Mapping) or set(average) != set(self.average):
            raise ValueError(f"the average must be of the parameters {sorted(self.average)}")
        for name, value in average.items():
            own = self.average[name]
            value = np.asarray(value)
            if value.shape != own.shape or value.dtype != own.dtype:
                raise ValueError(
                    f"average {name!r} must be {own.dtype} of shape {own.shape}, got "
                    f"{value.dtype} of shape {value.shape}"
                )
            if not np.isfinite(value).all():
                raise ValueError(f"average {name!r} contains NaN or infinity")
        for name, value in average.items():
            self.average[name][...] = value
        self.steps = int(steps)
