"""The ``Sequential`` container and the LeNet-5 reference network (DESIGN.md §5)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from numpy.typing import DTypeLike

from .layers import Conv2D, Flatten, Layer, Linear, MaxPool2D, ReLU

__all__ = ["LENET5_INPUT_SHAPE", "Sequential", "lenet5"]

#: One normalised MNIST digit, ``(C, H, W)``.
LENET5_INPUT_SHAPE = (1, 28, 28)


class Sequential:
    """Layers applied one after the other, with PyTorch-style parameter names.

    Parameters
    ----------
    layers : iterable of (str, Layer) pairs, or of Layer
        The layers in order; unnamed layers are called ``"0"``, ``"1"``, … Parameter names
        are ``"<layer>.<param>"``, e.g. ``"conv1.weight"``.

    Examples
    --------
    >>> net = Sequential([("fc", Linear(3, 2, rng=np.random.default_rng(0)))])
    >>> sorted(net.state_dict())
    ['fc.bias', 'fc.weight']
    """

    def __init__(self, layers: Iterable[tuple[str, Layer] | Layer]) -> None:
        self.layers: list[tuple[str, Layer]] = []
        for i, item in enumerate(layers):
            name, layer = item if isinstance(item, tuple) else (str(i), item)
            if not isinstance(layer, Layer):
                raise TypeError(f"layer {name!r} must be a Layer, got {type(layer).__name__}")
            if any(name == other for other, _ in self.layers):
                raise ValueError(f"layer names must be unique, {name!r} repeats")
            self.layers.append((name, layer))
        self.training = True

    # ------------------------------------------------------------------ passes

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Run a batch through every layer.

        Parameters
        ----------
        x : ndarray, shape (N, …), the parameters' dtype

        Returns
        -------
        ndarray
            The last layer's output (logits for a classifier).
        """
        for _, layer in self.layers:
            x = layer.forward(x)
        return x

    __call__ = forward

    def backward(self, dout: np.ndarray, *, input_grad: bool = True) -> np.ndarray | None:
        """Backpropagate ``dL/d(output)``; every layer stores its parameter gradients.

        Parameters
        ----------
        dout : ndarray
            Gradient of the loss with respect to the last forward's output.
        input_grad : bool
            When False, the first layer skips its input gradient (training does not need
            it) and None is returned.

        Returns
        -------
        ndarray or None
            ``dL/dx`` for the last forward's input.
        """
        first = self.layers[0][1]
        if isinstance(first, Conv2D):
            first.need_input_grad = input_grad
        for i, (_, layer) in enumerate(reversed(self.layers)):
            dout = layer.backward(dout)
            if dout is None and i < len(self.layers) - 1:
                raise RuntimeError("an inner layer returned no input gradient")
        return dout if input_grad else None

    # ------------------------------------------------------------------ modes

    def train(self, mode: bool = True) -> Sequential:
        """Switch every layer to training mode (or evaluation mode if ``mode`` is False)."""
        self.training = bool(mode)
        for _, layer in self.layers:
            layer.training = self.training
        return self

    def eval(self) -> Sequential:
        """Switch every layer to evaluation mode."""
        return self.train(False)

    # ------------------------------------------------------------------ parameters

    def state_dict(self, copy: bool = True) -> dict[str, np.ndarray]:
        """Parameters by name, ``{"conv1.weight": (6, 1, 5, 5) array, …}``.

        Parameters
        ----------
        copy : bool
            Return copies (default) or the live arrays that the optimisers update.
        """
        return {
            f"{name}.{key}": (value.copy() if copy else value)
            for name, layer in self.layers
            for key, value in layer.params.items()
        }

    def parameters(self) -> dict[str, np.ndarray]:
        """The live parameter arrays by name (what an optimiser updates in place)."""
        return self.state_dict(copy=False)

    def grads(self) -> dict[str, np.ndarray]:
        """The gradients of the last backward pass, under the parameter names."""
        return {
            f"{name}.{key}": value
            for name, layer in self.layers
            for key, value in layer.grads.items()
        }

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Copy parameters in, after checking that every name and shape matches.

        Parameters
        ----------
        state : mapping of str to array_like
            Exactly the names of :meth:`state_dict`, with the same shapes; values are cast
            to each parameter's dtype.

        Raises
        ------
        ValueError
            Naming every missing, unexpected and wrongly shaped entry.
        """
        own = self.state_dict(copy=False)
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        wrong = [
            f"{k}: expected {own[k].shape}, got {np.shape(state[k])}"
            for k in own
            if k in state and np.shape(state[k]) != own[k].shape
        ]
        problems = []
        if missing:
            problems.append("missing " + ", ".join(missing))
        if unexpected:
            problems.append("unexpected " + ", ".join(unexpected))
        if wrong:
            problems.append("wrong shape " + "; ".join(wrong))
        if problems:
            raise ValueError("state dict does not match the model: " + " | ".join(problems))
        for k, target in own.items():
            value = np.asarray(state[k])
            if not np.isfinite(value).all():
                raise ValueError(f"state dict entry {k} contains NaN or infinite values")
            target[...] = value

    def num_parameters(self) -> int:
        """Total number of learnable values."""
        return sum(v.size for v in self.state_dict(copy=False).values())

    # ------------------------------------------------------------------ summary

    def summary(self, input_shape: tuple[int, ...] = LENET5_INPUT_SHAPE) -> str:
        """A table of layers, output shapes and parameter counts.

        Parameters
        ----------
        input_shape : tuple of int
            One sample's shape without the batch axis, e.g. ``(1, 28, 28)``.

        Returns
        -------
        str
        """
        rows = [("layer", "type", "output shape", "params")]
        shape = tuple(input_shape)
        for name, layer in self.layers:
            shape = layer.output_shape(shape)
            count = sum(v.size for v in layer.params.values())
            rows.append((name, repr(layer), str(shape), f"{count:,}"))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = [
            "  ".join(
                cell.rjust(w) if i == 3 else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(r, widths, strict=True))
            ).rstrip()
            for r in rows
        ]
        lines.insert(1, "-" * len(lines[0]))
        lines.append(f"total parameters: {self.num_parameters():,}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        inner = ",\n".join(f"  ({name}): {layer!r}" for name, layer in self.layers)
        return f"Sequential(\n{inner}\n)"


def lenet5(dtype: DTypeLike = np.float32, seed: int | None = None) -> Sequential:
    """LeNet-5, ReLU variant, for normalised ``(N, 1, 28, 28)`` digits (DESIGN.md §5).

    conv 6@5×5 pad 2 → ReLU → max-pool 2 → conv 16@5×5 → ReLU → max-pool 2 → flatten
    (400) → linear 120 → ReLU → linear 84 → ReLU → linear 10; 61,706 parameters named
    ``conv1``, ``conv2``, ``fc1``, ``fc2``, ``fc3`` (``.weight``, ``.bias``).

    Parameters
    ----------
    dtype : float32 or float64
        Parameter dtype (float64 for gradient checks).
    seed : int, optional
        Seed of the He/Kaiming-normal initialisation.

    Returns
    -------
    Sequential

    Examples
    --------
    >>> net = lenet5(seed=0)
    >>> net.forward(np.zeros((2, 1, 28, 28), np.float32)).shape
    (2, 10)
    >>> net.num_parameters()
    61706
    """
    rng = np.random.default_rng(seed)
    return Sequential(
        [
            ("conv1", Conv2D(1, 6, 5, padding=2, dtype=dtype, rng=rng)),
            ("relu1", ReLU()),
            ("pool1", MaxPool2D(2)),
            ("conv2", Conv2D(6, 16, 5, dtype=dtype, rng=rng)),
            ("relu2", ReLU()),
            ("pool2", MaxPool2D(2)),
            ("flatten", Flatten()),
            ("fc1", Linear(400, 120, dtype=dtype, rng=rng)),
            ("relu3", ReLU()),
            ("fc2", Linear(120, 84, dtype=dtype, rng=rng)),
            ("relu4", ReLU()),
            ("fc3", Linear(84, 10, dtype=dtype, rng=rng)),
        ]
    )
