"""A committee of networks whose class probabilities are averaged (docs/design.md §5.12).

Several networks of one architecture, trained from different seeds on different
validation splits, make partly different mistakes; the mean of their softmax
probabilities is right more often than any one of them (Ciresan, Meier and Schmidhuber,
2012, "Multi-column deep neural networks for image classification"). A
:class:`Committee` is used wherever a :class:`~convnet.model.Sequential` classifier is:
its :meth:`~Committee.forward` returns the log of the mean probability,

    o = log q,    q = (1/M) Σ_m softmax(z_m),

so ``softmax(o) = q`` and everything built on logits (:func:`convnet.train.predict`,
``evaluate``, the most-wrong digits, the confusion matrix, the drawing page's bars) reads
the committee's probabilities unchanged. :meth:`~Committee.backward` carries ``dL/do``
back to the input through every member (the saliency map), with

    r_mk = g_k p_mk / (M q_k),    dL/dz_m = r_m - p_m Σ_k r_mk,

``g = dL/do``, ``p_m = softmax(z_m)``; the input gradient is the sum of the members' own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from .losses import log_softmax
from .model import Sequential, check_state_dict

__all__ = ["MAX_MEMBERS", "Committee", "first_network"]

#: Most networks a committee may have in training and in a checkpoint: a bound for
#: checking settings and files, not a recommendation.
MAX_MEMBERS = 64


class Committee:
    """Networks of one architecture whose softmax probabilities are averaged.

    Parameters
    ----------
    members : iterable of Sequential
        At least one; every member has the same layers (names and configuration) and
        parameters of the same names, shapes and dtype. They are held, not copied.

    Attributes
    ----------
    members : list of Sequential
    training : bool
        Training mode, handed to every member (see :meth:`train`, :meth:`eval`).

    Raises
    ------
    TypeError
        If a member is not a :class:`~convnet.model.Sequential`.
    ValueError
        If there is no member, or the members differ in architecture or dtype.

    Examples
    --------
    >>> from convnet import lenet5
    >>> committee = Committee([lenet5(seed=0), lenet5(seed=1)])
    >>> x = np.zeros((2, 1, 28, 28), np.float32)
    >>> np.exp(committee.forward(x)).sum(axis=1).round(5)  # the mean probabilities
    array([1., 1.], dtype=float32)
    >>> sorted(committee.state_dict())[:2]
    ['members.0.conv1.bias', 'members.0.conv1.weight']
    """

    def __init__(self, members: Iterable[Sequential]) -> None:
        self.members = list(members)
        if not self.members:
            raise ValueError("a committee needs at least one member")
        for i, member in enumerate(self.members):
            if not isinstance(member, Sequential):
                raise TypeError(f"member {i} must be a Sequential, got {type(member).__name__}")
        first = self.members[0]
        layers = [(name, repr(layer)) for name, layer in first.layers]
        shapes = {k: (v.shape, v.dtype) for k, v in first.state_dict(copy=False).items()}
        for i, member in enumerate(self.members[1:], start=1):
            if [(name, repr(layer)) for name, layer in member.layers] != layers:
                raise ValueError(f"member {i} has other layers than member 0")
            own = {k: (v.shape, v.dtype) for k, v in member.state_dict(copy=False).items()}
            if own != shapes:
                raise ValueError(
                    f"member {i}'s parameters differ from member 0's in shape or dtype"
                )
        self.training = first.training
        self._probs: np.ndarray | None = None  # (M, N, K) of the last forward pass
        self._shares: np.ndarray | None = None  # (M, N, K): p_mk / (M q_k)

    def __len__(self) -> int:
        return len(self.members)

    # ------------------------------------------------------------------ passes

    def forward(self, x: np.ndarray, *, threads: int | None = None) -> np.ndarray:
        """The log of the members' mean softmax probability, ``(N, classes)``.

        Parameters
        ----------
        x : ndarray, shape (N, …), the parameters' dtype
        threads : int, optional
            Threads each member's chunks run on (:meth:`Sequential.forward`); the result
            does not depend on it.

        Returns
        -------
        ndarray, shape (N, classes), the parameters' dtype
            ``log q``; its softmax is ``q`` itself.
        """
        logp = np.stack([log_softmax(m.forward(x, threads=threads)) for m in self.members])
        # log q by log-sum-exp over the members: every exponent ≤ 0, the largest exactly 0.
        top = logp.max(axis=0)
        out = top + np.log(np.exp(logp - top).mean(axis=0))
        self._probs = np.exp(logp)
        self._shares = np.exp(logp - out - np.log(logp.dtype.type(len(self.members))))
        return out

    __call__ = forward

    def backward(
        self, dout: np.ndarray, *, input_grad: bool = True, threads: int | None = None
    ) -> np.ndarray | None:
        """Backpropagate ``dL/d(output)`` of the last forward pass through every member.

        Each member's logit gradient is ``r_m - p_m Σ_k r_mk`` with
        ``r_mk = dout_k p_mk / (M q_k)`` (module docstring); each member keeps its own
        parameter gradients (its :meth:`~Sequential.grads`).

        Parameters
        ----------
        dout : ndarray, shape (N, classes)
        input_grad : bool
            When False, no input gradient is computed and None is returned.
        threads : int, optional
            As for :meth:`forward`.

        Returns
        -------
        ndarray or None
            ``dL/dx``, the sum of the members' input gradients, added in member order.

        Raises
        ------
        RuntimeError
            If no forward pass came first.
        ValueError
            If ``dout`` does not have the last forward output's shape.
        """
        if self._probs is None or self._shares is None:
            raise RuntimeError("Committee.backward called before forward")
        if np.shape(dout) != self._probs.shape[1:]:
            raise ValueError(
                f"dout must have the last forward output's shape {self._probs.shape[1:]}, "
                f"got {np.shape(dout)}"
            )
        r = np.asarray(dout, dtype=self._probs.dtype) * self._shares
        dz = r - self._probs * r.sum(axis=2, keepdims=True)
        total = None
        for member, dz_m in zip(self.members, dz, strict=True):
            dx = member.backward(dz_m, input_grad=input_grad, threads=threads)
            if input_grad:
                total = dx if total is None else total + dx
        return total

    # ------------------------------------------------------------------ modes

    def train(self, mode: bool = True) -> Committee:
        """Switch every member to training mode (evaluation mode if ``mode`` is False)."""
        self.training = bool(mode)
        for member in self.members:
            member.train(mode)
        return self

    def eval(self) -> Committee:
        """Switch every member to evaluation mode; returns self."""
        return self.train(False)

    # ------------------------------------------------------------------ parameters

    def state_dict(self, copy: bool = True) -> dict[str, np.ndarray]:
        """Every member's parameters, as ``members.<m>.<name>`` (PyTorch's ``ModuleList``
        names), member by member.

        Parameters
        ----------
        copy : bool
            Copies (default) or the live arrays.
        """
        return {
            f"members.{m}.{k}": v
            for m, member in enumerate(self.members)
            for k, v in member.state_dict(copy=copy).items()
        }

    def parameters(self) -> dict[str, np.ndarray]:
        """The live parameter arrays by name (as :meth:`state_dict`)."""
        return self.state_dict(copy=False)

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Copy parameters in, after checking every name and shape of every member.

        Raises
        ------
        ValueError
            Naming every missing, unexpected and wrongly shaped entry.
        """
        check_state_dict(self.state_dict(copy=False), state, "the committee")
        for m, member in enumerate(self.members):
            prefix = f"members.{m}."
            member.load_state_dict(
                {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            )

    def num_parameters(self) -> int:
        """Total number of learnable values of all members."""
        return sum(member.num_parameters() for member in self.members)

    def __repr__(self) -> str:
        return f"Committee of {len(self.members)} × {self.members[0]!r}"


def first_network(model: Sequential | Committee) -> Sequential:
    """The network whose filters and feature maps stand for ``model``: the model itself,
    or a committee's first member (members share an architecture, not their filters)."""
    return model.members[0] if isinstance(model, Committee) else model
