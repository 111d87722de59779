"""The ``Sequential`` container and the LeNet-5 reference network (DESIGN.md §5).

A batch larger than ``chunk_size`` runs through the network as fixed-size chunks of the
batch, each through its own set of layer twins (shallow copies that share the parameter
arrays but keep their own caches and gradients). That serves two ends:

- cache: the im2col buffers of a 32-image chunk stay in the core's cache between the gather
  and the product, where those of a whole 256-image batch do not;
- cores: the chunks run on a few threads with BLAS held to one thread (numpy releases the
  GIL in matrix products and in ufuncs over large arrays), so the elementwise work (ReLU,
  pooling, the im2col copies) uses every core as well as the products do.

The split depends only on the batch size, never on the thread count, and the chunks'
parameter gradients are summed in chunk order; a given batch therefore gives the same
results bit for bit with one thread or several, and the same as one whole-batch pass up to
rounding.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable, Iterable, Mapping

import numpy as np
from numpy.typing import DTypeLike

from pyramids.parallel import blas_threads, run_parts

from .layers import AvgPool2D, Conv2D, Flatten, Layer, Linear, MaxPool2D, ReLU, Sigmoid, Tanh

__all__ = ["DEFAULT_CHUNK_SIZE", "LENET5_INPUT_SHAPE", "Sequential", "lenet5"]

#: One normalised MNIST digit, ``(C, H, W)``.
LENET5_INPUT_SHAPE = (1, 28, 28)

#: Images per chunk of a large batch: LeNet-5's im2col buffers for 32 images (about 3 MB
#: for conv1) stay in a core's L2 cache, and a batch of 64 already gives two chunks to run
#: side by side; larger chunks were slower at batch 256, smaller ones pay more per-call
#: overhead than they save.
DEFAULT_CHUNK_SIZE = 32

#: Layer types whose only state between ``forward`` and ``backward`` is a per-call cache,
#: so that twins sharing ``params`` can run other chunks at the same time. Dropout is not
#: among them: chunks running in parallel would draw its masks from the shared generator in
#: an order that depends on thread timing.
_CHUNKABLE = (AvgPool2D, Conv2D, Flatten, Linear, MaxPool2D, ReLU, Sigmoid, Tanh)


# --------------------------------------------------------------------------- threads


def _run_chunks(task: Callable[[int], None], count: int, threads: int) -> None:
    """Run ``task(0) … task(count - 1)`` on up to ``threads`` threads of the package's pool.

    Which thread runs a chunk never changes its result, since every chunk has its own layer
    twins; BLAS is held to one thread (:func:`pyramids.operators.run_split`).
    """

    def part(start: int, stop: int) -> None:
        for i in range(start, stop):
            task(i)

    run_parts(part, count, threads)


def _twin(layer: Layer) -> Layer:
    """A shallow copy of ``layer`` that shares its ``params`` but has its own gradients."""
    twin = copy.copy(layer)
    twin.grads = {key: np.zeros_like(value) for key, value in layer.params.items()}
    return twin


class Sequential:
    """Layers applied one after the other, with PyTorch-style parameter names.

    Parameters
    ----------
    layers : iterable of (str, Layer) pairs, or of Layer
        The layers in order; unnamed layers are called ``"0"``, ``"1"``, … Parameter names
        are ``"<layer>.<param>"``, e.g. ``"conv1.weight"``.
    chunk_size : int or None
        A batch of more than ``chunk_size`` samples runs as chunks of that many (the last
        one smaller), with the parameter gradients summed over the chunks in order (see the
        module docstring). None runs every batch whole. Networks with a layer that is not
        safe to run on several chunks at once (:class:`~convnet.layers.Dropout`, or any
        layer type this module does not know) always run whole batches.
    num_threads : int or None
        Most threads the chunks run on; None (default) uses as many as BLAS may use at the
        time of the call (``threadpoolctl.threadpool_limits`` sets that; inside another
        call that holds BLAS to one thread, such as a pyramid running at the same time,
        that is 1). The results do not depend on it.

    Examples
    --------
    >>> net = Sequential([("fc", Linear(3, 2, rng=np.random.default_rng(0)))])
    >>> sorted(net.state_dict())
    ['fc.bias', 'fc.weight']
    """

    def __init__(
        self,
        layers: Iterable[tuple[str, Layer] | Layer],
        *,
        chunk_size: int | None = DEFAULT_CHUNK_SIZE,
        num_threads: int | None = None,
    ) -> None:
        for value, name in ((chunk_size, "chunk_size"), (num_threads, "num_threads")):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1
            ):
                raise ValueError(f"{name} must be a positive int or None, got {value!r}")
        self.chunk_size = None if chunk_size is None else int(chunk_size)
        self.num_threads = None if num_threads is None else int(num_threads)
        self.layers: list[tuple[str, Layer]] = []
        for i, item in enumerate(layers):
            name, layer = item if isinstance(item, tuple) else (str(i), item)
            if not isinstance(layer, Layer):
                raise TypeError(f"layer {name!r} must be a Layer, got {type(layer).__name__}")
            if any(name == other for other, _ in self.layers):
                raise ValueError(f"layer names must be unique, {name!r} repeats")
            self.layers.append((name, layer))
        self.training = True
        # _stacks[0] is the layers themselves, _stacks[i] the twins that run chunk i.
        self._stacks: list[list[Layer]] = []
        self._spans: list[tuple[int, int]] | None = None  # the last forward's chunks

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
        spans = self._split(x)
        self._spans = spans
        if spans is None:
            del self._stacks[1:]  # twins of an earlier, larger batch would keep its caches
            for _, layer in self.layers:
                x = layer.forward(x)
            return x
        stacks = self._chunk_stacks(len(spans))
        outs: list[np.ndarray | None] = [None] * len(spans)

        def run(i: int) -> None:
            start, stop = spans[i]
            h = x[start:stop]
            for layer in stacks[i]:
                h = layer.forward(h)
            outs[i] = h

        _run_chunks(run, len(spans), self._threads())
        return np.concatenate(outs)

    __call__ = forward

    def _split(self, x: np.ndarray) -> list[tuple[int, int]] | None:
        """The chunks ``[(start, stop), …]`` of a batch, or None to run it whole."""
        size = self.chunk_size
        n = len(x) if getattr(x, "ndim", 0) else 0
        if size is None or n <= size or not self._chunkable():
            return None
        return [(start, min(start + size, n)) for start in range(0, n, size)]

    def _chunkable(self) -> bool:
        return all(type(layer) in _CHUNKABLE for _, layer in self.layers)

    def _threads(self) -> int:
        return self.num_threads if self.num_threads is not None else blas_threads()

    def _chunk_stacks(self, count: int) -> list[list[Layer]]:
        """``count`` layer stacks, the model's own first, then twins (kept between calls
        while the count does not shrink).

        Twins are rebuilt when a layer or its parameter dict has been replaced, and take
        the current training flags.
        """
        own = [layer for _, layer in self.layers]
        stacks = self._stacks
        if not stacks or len(stacks[0]) != len(own) or any(map(operator.is_not, stacks[0], own)):
            stacks = self._stacks = [own]
        for stack in stacks[1:]:
            if any(t.params is not layer.params for t, layer in zip(stack, own, strict=True)):
                del stacks[1:]
                break
        # Drop the twins a larger batch needed: they would keep its caches alive.
        del stacks[max(count, 1) :]
        while len(stacks) < count:
            stacks.append([_twin(layer) for layer in own])
        for stack in stacks[1:]:
            for twin, layer in zip(stack, own, strict=True):
                twin.training = layer.training
        return stacks

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
        spans = self._spans
        if spans is None:
            return self._backward_stack([layer for _, layer in self.layers], dout, input_grad)
        n = spans[-1][1]
        if np.shape(dout)[:1] != (n,):
            raise ValueError(
                f"dout must have the last forward's batch size {n} first, got shape "
                f"{np.shape(dout)}"
            )
        stacks = self._stacks[: len(spans)]
        dxs: list[np.ndarray | None] = [None] * len(spans)

        def run(i: int) -> None:
            start, stop = spans[i]
            dxs[i] = self._backward_stack(stacks[i], dout[start:stop], input_grad)

        _run_chunks(run, len(spans), self._threads())
        # Sum the twins' gradients into the model's own (which hold chunk 0's), always in
        # chunk order, so that the result does not depend on which thread finished first.
        for j, (_, layer) in enumerate(self.layers):
            for key, grad in layer.grads.items():
                for stack in stacks[1:]:
                    grad += stack[j].grads[key]
        return np.concatenate(dxs) if input_grad else None

    @staticmethod
    def _backward_stack(
        layers: list[Layer], dout: np.ndarray, input_grad: bool
    ) -> np.ndarray | None:
        """Backpropagate through one stack of layers (the model's own or a chunk's twins)."""
        if isinstance(layers[0], Conv2D):
            layers[0].need_input_grad = input_grad
        for i, layer in enumerate(reversed(layers)):
            dout = layer.backward(dout)
            if dout is None and i < len(layers) - 1:
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
