"""The ``Sequential`` container and the LeNet-5 reference network (docs/design.md §5).

A :class:`Sequential` keeps what a network has of state: its layers (configuration only,
see :mod:`convnet.layers`), their parameters, the caches of the last forward pass and the
gradients of the last backward pass. The passes themselves are two pure functions,
:func:`forward_pass` and :func:`backward_pass`, that run a batch through the layers.

A batch larger than ``chunk_size`` runs as fixed-size chunks, a map over the chunks and a
sum of their gradients::

    out_k, caches_k = forward_pass(layers, params, x_k)                  for every chunk k
    dx_k, grads_k = backward_pass(layers, params, caches_k, dout_k)      for every chunk k
    grads = grads_0 + grads_1 + …                                        in chunk order

That serves two ends:

- cache: the im2col buffers of a 32-image chunk stay in the core's cache between the gather
  and the product, where those of a whole 256-image batch do not;
- cores: the chunks run on ``threads`` threads (:func:`pyramids.parallel.run_parts`, BLAS
  held to one thread; numpy releases the GIL in matrix products and in ufuncs over large
  arrays), so the elementwise work (ReLU, pooling, the im2col copies) uses every core as
  well as the products do.

The split depends only on the batch size, never on the thread count; a chunk's result does
not depend on the thread that runs it, since the layers keep nothing between calls; and the
gradients are summed in chunk order. A given batch therefore gives the same results bit for
bit with one thread or several, and the same as one whole-batch pass up to rounding.

A layer that draws random numbers (:class:`~convnet.layers.Dropout`) keeps its generator
as ``layer.rng``. In training, a whole batch draws from it directly; chunks each draw from
a generator of their own, seeded by one draw from the layer's generator per chunk, made in
chunk order before the chunks run. So the masks do not depend on thread timing either, and
the layer's generator state after a step is the same whatever the thread count.

The model runs every convolution → ReLU → 2×2 max pooling of its layers as one fused
stage (:class:`~convnet.fast_layers.ConvReLUPool`, docs/design.md §5.10), which writes
into arrays the model keeps from one pass to the next (for each thread that calls it, a
workspace per chunk; and one per thread that runs a chunk) rather than into fresh ones.
So threads that share a model may run forward passes at once, each writing its own
arrays; a backward pass uses the caches of the model's last forward pass, whichever
thread ran it, so training passes run one at a time (``convnet serve`` holds a lock).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from pyramids.parallel import resolve_threads, run_parts

from .data import MNIST_MEAN, MNIST_STD
from .fast_layers import ConvReLUPool, FastConv2D, FastMaxPool2D, FastReLU, Workspace
from .layers import Flatten, Layer, Linear, Pad2D, Params, ScaledTanh, Subsample2D

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "LENET5_INPUT_SHAPE",
    "LENET5_VARIANTS",
    "Sequential",
    "backward_pass",
    "forward_pass",
    "lenet5",
    "lenet5_variant",
    "state_mismatches",
]

#: One normalised MNIST digit, ``(C, H, W)``.
LENET5_INPUT_SHAPE = (1, 28, 28)

#: The LeNet-5 variants :func:`lenet5` builds; the first is the default.
LENET5_VARIANTS = ("relu", "classic")

#: Images per chunk of a large batch: LeNet-5's im2col buffers for 32 images (about 3 MB
#: for conv1) stay in a core's L2 cache, and a batch of 64 already gives two chunks to run
#: side by side; larger chunks were slower at batch 256, smaller ones pay more per-call
#: overhead than they save.
DEFAULT_CHUNK_SIZE = 32

NamedLayers = list[tuple[str, Layer]]


# --------------------------------------------------------------------------- the passes


def forward_pass(
    layers: NamedLayers,
    params: Mapping[str, Params],
    x: np.ndarray,
    *,
    training: bool = True,
    rngs: Mapping[str, np.random.Generator] | None = None,
) -> tuple[np.ndarray, list[Any]]:
    """Run a batch through ``layers``, keeping every layer's cache.

    Parameters
    ----------
    layers : list of (name, Layer)
    params : mapping of layer name to that layer's parameter dict
    x : ndarray, shape (N, …)
    training : bool
        Handed to every layer (it switches :class:`~convnet.layers.Dropout`).
    rngs : mapping of layer name to numpy.random.Generator, optional
        The generator each random layer draws from (None: its own).

    Returns
    -------
    out : ndarray
        The last layer's output.
    caches : list
        One cache per layer, in order, for :func:`backward_pass`.
    """
    rngs = rngs or {}
    caches = []
    for name, layer in layers:
        x, cache = layer.forward(params[name], x, training=training, rng=rngs.get(name))
        caches.append(cache)
    return x, caches


def backward_pass(
    layers: NamedLayers,
    params: Mapping[str, Params],
    caches: list[Any],
    dout: np.ndarray,
    *,
    need_dx: bool = True,
) -> tuple[np.ndarray | None, dict[str, Params]]:
    """Backpropagate ``dout = dL/d(out)`` through ``layers``, last to first.

    Parameters
    ----------
    layers, params : as for :func:`forward_pass`
    caches : list
        What :func:`forward_pass` returned for the same batch.
    dout : ndarray
    need_dx : bool
        Whether ``dL/dx`` is wanted; when False the first layer is asked to skip it.

    Returns
    -------
    dx : ndarray or None
        ``dL/dx``, None when not ``need_dx``.
    grads : dict of layer name to that layer's gradient dict
    """
    grads: dict[str, Params] = {}
    for i in reversed(range(len(layers))):
        name, layer = layers[i]
        wanted = need_dx or i > 0
        dout, grads[name] = layer.backward(params[name], caches[i], dout, need_dx=wanted)
        if wanted and dout is None:
            raise RuntimeError(f"layer {name!r} returned no input gradient")
    return (dout if need_dx else None), grads


#: A stage of a network: layers ``start … stop - 1``, run one by one, or as one fused
#: stage when ``fused`` is not None.
Stage = tuple[int, int, ConvReLUPool | None]


def _plan(layers: NamedLayers) -> list[Stage]:
    """The stages :class:`Sequential` runs ``layers`` in: every convolution, ReLU and 2×2
    max pooling that :meth:`ConvReLUPool.joins` as one fused stage, each other layer alone."""
    stages: list[Stage] = []
    i = 0
    while i < len(layers):
        triple = [layer for _, layer in layers[i : i + 3]]
        if len(triple) == 3 and ConvReLUPool.joins(*triple):
            stages.append((i, i + 3, ConvReLUPool(*triple)))
            i += 3
        else:
            stages.append((i, i + 1, None))
            i += 1
    return stages


def _staged_forward(
    layers: NamedLayers,
    stages: list[Stage],
    params: Mapping[str, Params],
    x: np.ndarray,
    *,
    training: bool,
    rngs: Mapping[str, np.random.Generator],
    keep: Workspace | None = None,
    scratch: Workspace | None = None,
    keep_columns: bool = True,
) -> tuple[np.ndarray, list[Any]]:
    """:func:`forward_pass` by stages: one cache per stage, a list of the layers' caches
    where the stage ran layer by layer (a fused stage whose input does not fit it does).
    The fused stages write their caches in ``keep``, their temporaries in ``scratch``
    (their columns too, unless ``keep_columns``: :meth:`ConvReLUPool.forward`)."""
    caches: list[Any] = []
    for start, stop, fused in stages:
        if fused is not None:
            result = fused.forward(
                params[layers[start][0]],
                x,
                keep_columns=keep_columns,
                keep=keep,
                scratch=scratch,
            )
            if result is not None:
                x, cache = result
                caches.append(cache)
                continue
        x, group = forward_pass(layers[start:stop], params, x, training=training, rngs=rngs)
        caches.append(group)
    return x, caches


def _staged_backward(
    layers: NamedLayers,
    stages: list[Stage],
    params: Mapping[str, Params],
    caches: list[Any],
    dout: np.ndarray,
    *,
    need_dx: bool,
    scratch: Workspace | None = None,
) -> tuple[np.ndarray | None, dict[str, Params]]:
    """:func:`backward_pass` for the caches of :func:`_staged_forward` (the fused stages'
    temporaries in ``scratch``)."""
    grads: dict[str, Params] = {}
    for (start, stop, fused), cache in zip(reversed(stages), reversed(caches), strict=True):
        wanted = need_dx or start > 0
        if isinstance(cache, list):
            dout, part = backward_pass(layers[start:stop], params, cache, dout, need_dx=wanted)
            grads.update(part)
        else:
            names = [name for name, _ in layers[start:stop]]
            for name in reversed(names[1:]):
                grads[name] = {}
            dout, grads[names[0]] = fused.backward(
                params[names[0]], cache, dout, need_dx=wanted, scratch=scratch
            )
    return (dout if need_dx else None), grads


def state_mismatches(expected: Mapping[str, tuple], given: Mapping[str, tuple]) -> str:
    """What keeps parameters of the ``given`` shapes from fitting the ``expected`` ones.

    Returns
    -------
    str
        ``"missing a, b | unexpected c | wrong shape d: expected (…), got (…)"`` with the
        parts that apply, ``""`` when the names and shapes match.
    """
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    wrong = [
        f"{k}: expected {expected[k]}, got {given[k]}"
        for k in expected
        if k in given and tuple(given[k]) != tuple(expected[k])
    ]
    problems = []
    if missing:
        problems.append("missing " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected " + ", ".join(unexpected))
    if wrong:
        problems.append("wrong shape " + "; ".join(wrong))
    return " | ".join(problems)


def check_state_dict(
    own: Mapping[str, np.ndarray], state: Mapping[str, np.ndarray], what: str
) -> None:
    """Raise ``ValueError`` unless ``state`` has exactly the names and shapes of ``own`` and
    only finite values: every entry is checked before anything is loaded, so a refused
    state leaves the parameters as they were. ``what`` names the receiver in the message."""
    problems = state_mismatches(
        {k: v.shape for k, v in own.items()}, {k: np.shape(v) for k, v in state.items()}
    )
    if problems:
        raise ValueError(f"state dict does not match {what}: {problems}")
    for k in own:
        if not np.isfinite(np.asarray(state[k])).all():
            raise ValueError(f"state dict entry {k} contains NaN or infinite values")


def _sum_in_order(per_chunk: list[dict[str, Params]]) -> dict[str, Params]:
    """``grads_0 + grads_1 + …``, added in list order (so the rounding is fixed)."""
    if len(per_chunk) == 1:
        return per_chunk[0]
    total = {name: {k: g.copy() for k, g in grads.items()} for name, grads in per_chunk[0].items()}
    for grads in per_chunk[1:]:
        for name, layer_grads in grads.items():
            for key, g in layer_grads.items():
                total[name][key] += g
    return total


# --------------------------------------------------------------------------- the model


class Sequential:
    """Layers applied one after the other, with PyTorch-style parameter names.

    Parameters
    ----------
    layers : iterable of (str, Layer) pairs, or of Layer
        The layers in order; unnamed layers are called ``"0"``, ``"1"``, … Parameter names
        are ``"<layer>.<param>"``, e.g. ``"conv1.weight"``.
    rng : numpy.random.Generator or int, optional
        Generator (or seed) of the initial parameters, drawn layer by layer in order by
        each layer's ``init_params``; None draws fresh entropy.
    chunk_size : int or None
        A batch of more than ``chunk_size`` samples runs as chunks of that many (the last
        one smaller), with the parameter gradients summed over the chunks in order (see the
        module docstring). None runs every batch whole.
    threads : int or None
        How many threads the chunks of a batch run on, unless a call says otherwise; None
        (default) means :func:`pyramids.parallel.default_threads` at the time of each call
        (``$PYRAMIDS_NUM_THREADS``, else the usable cores, at most 4). The results do not
        depend on it.

    Attributes
    ----------
    layers : list of (str, Layer)
    params : dict of str to dict of str to ndarray
        Every layer's parameters by layer name (``{}`` for a layer without any), the live
        arrays that the optimisers update in place.
    training : bool
        Training mode (see :meth:`train`, :meth:`eval`).
    chunk_size, threads : as above

    Examples
    --------
    >>> net = Sequential([("fc", Linear(3, 2))], rng=0)
    >>> sorted(net.state_dict())
    ['fc.bias', 'fc.weight']
    >>> net.params["fc"]["weight"].shape
    (2, 3)
    """

    def __init__(
        self,
        layers: Iterable[tuple[str, Layer] | Layer],
        *,
        rng: np.random.Generator | int | None = None,
        chunk_size: int | None = DEFAULT_CHUNK_SIZE,
        threads: int | None = None,
    ) -> None:
        for value, name in ((chunk_size, "chunk_size"), (threads, "threads")):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1
            ):
                raise ValueError(f"{name} must be a positive int or None, got {value!r}")
        self.chunk_size = None if chunk_size is None else int(chunk_size)
        self.threads = None if threads is None else int(threads)
        self.layers: NamedLayers = []
        for i, item in enumerate(layers):
            name, layer = item if isinstance(item, tuple) else (str(i), item)
            if not isinstance(layer, Layer):
                raise TypeError(f"layer {name!r} must be a Layer, got {type(layer).__name__}")
            if any(name == other for other, _ in self.layers):
                raise ValueError(f"layer names must be unique, {name!r} repeats")
            self.layers.append((name, layer))
        self._stages = _plan(self.layers)
        rng = np.random.default_rng(rng)
        self.params: dict[str, Params] = {
            name: layer.init_params(rng) for name, layer in self.layers
        }
        self.training = True
        self._grads = {
            name: {key: np.zeros_like(value) for key, value in params.items()}
            for name, params in self.params.items()
        }
        # From the last forward pass: its chunks (None: the batch ran whole) and, for
        # each chunk, its layers' caches; from the last backward pass, each chunk's
        # results. Each is replaced only once the next pass has made its own: freed
        # first, the buffers go back to the operating system at the top of the
        # allocator's heaps and are faulted in again on the next pass (measured: a
        # training step at batch 256 on two threads took 1.7 times as long).
        self._spans: list[tuple[int, int]] | None = None
        self._caches: list[list[Any]] | None = None
        self._chunk_results: list[Any] = []
        # The fused stages' arrays (docs/design.md §5.10): what chunk i's caches hold in
        # the calling thread's .keep[i], valid until that thread's next pass (two threads'
        # forward passes must not write each other's outputs); what a pass drops in the
        # .scratch of the thread that runs it.
        self._local = threading.local()  # .keep, .scratch: the thread's Workspaces

    # ------------------------------------------------------------------ passes

    def forward(self, x: np.ndarray, *, threads: int | None = None) -> np.ndarray:
        """Run a batch through every layer, keeping the caches for :meth:`backward`.

        Parameters
        ----------
        x : ndarray, shape (N, …), the parameters' dtype
        threads : int, optional
            Threads the chunks run on for this call (default: :attr:`threads`).

        Returns
        -------
        ndarray
            The last layer's output (logits for a classifier).

        Raises
        ------
        ValueError
            For an empty batch (no caches could be kept for :meth:`backward`).
        """
        if np.ndim(x) >= 1 and len(x) == 0:  # others are refused by the first layer, one line
            raise ValueError(
                f"forward needs at least one input, got a batch of shape {np.shape(x)}"
            )
        threads = resolve_threads(self.threads if threads is None else threads)
        spans = self._chunk_spans(x)
        chunks = [x] if spans is None else [x[start:stop] for start, stop in spans]
        rngs = self._chunk_generators(len(chunks))
        results: list[Any] = [None] * len(chunks)
        keep = self._workspaces(len(chunks))

        def run(i: int) -> None:
            results[i] = self._chunk_forward(
                chunks[i], rngs[i], keep[i], self._thread_scratch(), self.training
            )

        self._map(run, len(chunks), threads)
        self._spans = spans
        self._caches = [caches for _, caches in results]
        outs = [out for out, _ in results]
        return self._fresh(outs)

    __call__ = forward

    def _chunk_forward(self, chunk, rngs, keep, scratch, keep_columns: bool):
        """The staged forward pass of one chunk: ``(out, caches)`` (:func:`_staged_forward`)."""
        return _staged_forward(
            self.layers,
            self._stages,
            self.params,
            chunk,
            training=self.training,
            rngs=rngs,
            keep=keep,
            scratch=scratch,
            keep_columns=keep_columns,
        )

    def backward(
        self, dout: np.ndarray, *, input_grad: bool = True, threads: int | None = None
    ) -> np.ndarray | None:
        """Backpropagate ``dL/d(output)`` of the last forward pass.

        The parameter gradients are kept, and returned by :meth:`grads`.

        Parameters
        ----------
        dout : ndarray
            Gradient of the loss with respect to the last forward's output.
        input_grad : bool
            When False, the first layer skips its input gradient (training does not need
            it) and None is returned.
        threads : int, optional
            Threads the chunks run on for this call (default: :attr:`threads`).

        Returns
        -------
        ndarray or None
            ``dL/dx`` for the last forward's input.

        Raises
        ------
        RuntimeError
            If no forward pass came first.
        ValueError
            If ``dout`` does not have the last forward's batch size first.
        """
        threads = resolve_threads(self.threads if threads is None else threads)
        if self._caches is None:
            raise RuntimeError("Sequential.backward called before forward")
        caches, spans = self._caches, self._spans
        if spans is None:
            douts = [dout]
        else:
            n = spans[-1][1]
            if np.shape(dout)[:1] != (n,):
                raise ValueError(
                    f"dout must have the last forward's batch size {n} first, got shape "
                    f"{np.shape(dout)}"
                )
            douts = [dout[start:stop] for start, stop in spans]
        results: list[Any] = [None] * len(caches)

        def run(i: int) -> None:
            results[i] = _staged_backward(
                self.layers,
                self._stages,
                self.params,
                caches[i],
                douts[i],
                need_dx=input_grad,
                scratch=self._thread_scratch(),
            )

        self._map(run, len(caches), threads)
        self._chunk_results = results  # see __init__
        self._grads = _sum_in_order([grads for _, grads in results])
        if not input_grad:
            return None
        dxs = [dx for dx, _ in results]
        return dxs[0] if len(dxs) == 1 else np.concatenate(dxs)

    def train_step(
        self,
        x: np.ndarray,
        loss: Callable[[np.ndarray, slice], tuple[float, np.ndarray]],
        *,
        threads: int | None = None,
    ) -> tuple[float, np.ndarray]:
        """Forward pass, loss and backward pass of one batch, each chunk start to end.

        The same results as :meth:`forward`, then ``loss`` on the whole batch's output,
        then :meth:`backward` with ``input_grad=False`` (bit for bit when ``loss`` treats
        rows independently, as :func:`~convnet.losses.cross_entropy` with ``count`` does),
        but each chunk runs its forward pass, its loss and its backward pass in one go on
        one thread, while its caches are still in that core's cache (docs/design.md §5.10).
        The parameter gradients are kept for :meth:`grads`, the caches as after
        :meth:`forward`.

        Parameters
        ----------
        x : ndarray, shape (N, …)
        loss : callable ``(out, rows) -> (value, dout)``
            Called once per chunk with the chunk's output and its rows of the batch (a
            slice); returns the chunk's share of the loss and ``dL/d(out)`` for the chunk.
            The shares are added in chunk order.
        threads : int, optional
            Threads the chunks run on for this call (default: :attr:`threads`).

        Returns
        -------
        loss : float
            The sum of the chunks' shares.
        out : ndarray
            The last layer's output for the batch (logits for a classifier).

        Examples
        --------
        >>> from convnet.losses import cross_entropy
        >>> net = lenet5(seed=0)
        >>> x, y = np.zeros((40, 1, 28, 28), np.float32), np.arange(40) % 10
        >>> value, logits = net.train_step(x, lambda z, rows: cross_entropy(z, y[rows], count=40))
        >>> logits.shape, round(value, 4)
        ((40, 10), 2.3026)
        """
        threads = resolve_threads(self.threads if threads is None else threads)
        spans = self._chunk_spans(x)
        if spans is None:
            spans_or_whole = [(0, len(x))]
            chunks = [x]
        else:
            spans_or_whole = spans
            chunks = [x[start:stop] for start, stop in spans]
        rngs = self._chunk_generators(len(chunks))
        results: list[Any] = [None] * len(chunks)
        keep = self._workspaces(len(chunks))

        def run(i: int) -> None:
            scratch = self._thread_scratch()
            # keep_columns=False: backward follows on this thread (see ConvReLUPool)
            out, caches = self._chunk_forward(chunks[i], rngs[i], keep[i], scratch, False)
            value, dout = loss(out, slice(*spans_or_whole[i]))
            _, grads = _staged_backward(
                self.layers,
                self._stages,
                self.params,
                caches,
                dout,
                need_dx=False,
                scratch=scratch,
            )
            results[i] = (out, caches, float(value), grads)

        self._map(run, len(chunks), threads)
        self._spans = spans
        self._caches = [caches for _, caches, _, _ in results]
        self._chunk_results = results  # see __init__
        self._grads = _sum_in_order([grads for _, _, _, grads in results])
        total = 0.0
        for _, _, value, _ in results:
            total += value
        outs = [out for out, _, _, _ in results]
        return total, self._fresh(outs)

    def _fresh(self, outs: list[np.ndarray]) -> np.ndarray:
        """The chunks' outputs as one array of the caller's own: a single chunk's output is
        copied where it may lie in a workspace (the next pass would overwrite it)."""
        if len(outs) > 1:
            return np.concatenate(outs)
        fused = any(fused is not None for _, _, fused in self._stages)
        return outs[0].copy() if fused else outs[0]

    def _workspaces(self, count: int) -> list[Workspace]:
        """The calling thread's workspaces of the first ``count`` chunks (made as needed)."""
        keep = getattr(self._local, "keep", None)
        if keep is None:
            keep = self._local.keep = []
        while len(keep) < count:
            keep.append(Workspace())
        return keep[:count]

    def _thread_scratch(self) -> Workspace:
        """The calling thread's scratch workspace for this model."""
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = Workspace()
        return scratch

    def _chunk_spans(self, x: np.ndarray) -> list[tuple[int, int]] | None:
        """The chunks ``[(start, stop), …]`` of a batch, or None to run it whole."""
        size = self.chunk_size
        n = len(x) if isinstance(x, np.ndarray) and x.ndim else 0
        if size is None or n <= size:
            return None
        return [(start, min(start + size, n)) for start in range(0, n, size)]

    def _chunk_generators(self, count: int) -> list[dict[str, np.random.Generator]]:
        """For every chunk, the generator each random layer draws from (module docstring)."""
        out: list[dict[str, np.random.Generator]] = [{} for _ in range(count)]
        if not self.training:
            return out
        for name, layer in self.layers:
            if layer.rng is None:
                continue
            if count == 1:
                out[0][name] = layer.rng
            else:
                for chunk, seed in zip(out, layer.rng.integers(2**63, size=count), strict=True):
                    chunk[name] = np.random.default_rng(seed)
        return out

    @staticmethod
    def _map(task: Callable[[int], None], count: int, threads: int) -> None:
        """``task(0) … task(count - 1)``; several on ``threads`` threads, BLAS held to one."""
        if count == 1:
            task(0)
            return

        def part(start: int, stop: int) -> None:
            for i in range(start, stop):
                task(i)

        # The calling thread runs the first part itself: one hand-off fewer per pass (the
        # chunks never split their work again, see pyramids.parallel.run_parts).
        run_parts(part, count, threads, in_caller=True)

    # ------------------------------------------------------------------ modes

    def train(self, mode: bool = True) -> Sequential:
        """Switch to training mode (or evaluation mode if ``mode`` is False); returns self.

        The mode is handed to every layer's ``forward`` (it switches Dropout).
        """
        self.training = bool(mode)
        return self

    def eval(self) -> Sequential:
        """Switch to evaluation mode; returns self."""
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
            for name, params in self.params.items()
            for key, value in params.items()
        }

    def parameters(self) -> dict[str, np.ndarray]:
        """The live parameter arrays by name (what an optimiser updates in place)."""
        return self.state_dict(copy=False)

    def grads(self) -> dict[str, np.ndarray]:
        """The gradients of the last backward pass, under the parameter names (zeros before
        the first); fresh arrays after every backward pass."""
        return {
            f"{name}.{key}": value
            for name, grads in self._grads.items()
            for key, value in grads.items()
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
        check_state_dict(own, state, "the model")
        for k, target in own.items():
            target[...] = np.asarray(state[k])

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
            count = sum(v.size for v in self.params[name].values())
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

    def __getstate__(self) -> dict[str, Any]:
        """What a copy or a pickle keeps: all but the threads' workspaces (which cannot be
        pickled, and which a copy must not share: its passes would write the original's)."""
        state = self.__dict__.copy()
        del state["_local"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()  # workspaces of its own, made as its passes need


def lenet5(
    dtype: DTypeLike = np.float32,
    seed: int | None = None,
    *,
    threads: int | None = None,
    variant: str = "relu",
) -> Sequential:
    """LeNet-5 for normalised ``(N, 1, 28, 28)`` digits (docs/design.md §5.7, §5.9).

    ``variant="relu"`` (default), the reference network: conv 6@5×5 pad 2 → ReLU →
    max-pool 2 → conv 16@5×5 → ReLU → max-pool 2 → flatten (400) → linear 120 → ReLU →
    linear 84 → ReLU → linear 10; 61,706 parameters named ``conv1``, ``conv2``, ``fc1``,
    ``fc2``, ``fc3`` (``.weight``, ``.bias``).

    ``variant="classic"``, after LeCun et al. 1998: the digit padded to 32×32 with the
    normalised white background → C1 conv 6@5×5 → S2 trainable subsampling 2×2 (a
    coefficient and a bias per map) → C3 conv 16@5×5 → S4 subsampling → C5 fully
    connected 120 (a 5×5 convolution of the 5×5 maps) → F6 84 → output 10, every layer
    up to F6 followed by the scaled tanh ``1.7159·tanh(2x/3)``; C3 connects every S2 map
    (the paper's table of partial connections is left out) and the output is linear
    logits for softmax cross-entropy (the paper's Euclidean RBF units are left out);
    61,750 parameters, under the same names plus ``pool1`` and ``pool2``.

    The convolutions, ReLUs and max-poolings are the fast versions of
    :mod:`convnet.fast_layers`.

    Parameters
    ----------
    dtype : float32 or float64
        Parameter dtype (float64 for gradient checks).
    seed : int, optional
        Seed of the He/Kaiming-normal initialisation.
    threads : int, optional
        The model's default thread count (:class:`Sequential`).
    variant : {'relu', 'classic'}

    Returns
    -------
    Sequential

    Examples
    --------
    >>> net = lenet5(seed=0)
    >>> net.forward(np.zeros((2, 1, 28, 28), np.float32)).shape
    (2, 10)
    >>> net.num_parameters(), lenet5(variant="classic").num_parameters()
    (61706, 61750)
    """
    if variant == "relu":
        layers: NamedLayers = [
            ("conv1", FastConv2D(1, 6, 5, padding=2, dtype=dtype)),
            ("relu1", FastReLU()),
            ("pool1", FastMaxPool2D(2)),
            ("conv2", FastConv2D(6, 16, 5, dtype=dtype)),
            ("relu2", FastReLU()),
            ("pool2", FastMaxPool2D(2)),
            ("flatten", Flatten()),
            ("fc1", Linear(400, 120, dtype=dtype)),
            ("relu3", FastReLU()),
            ("fc2", Linear(120, 84, dtype=dtype)),
            ("relu4", FastReLU()),
            ("fc3", Linear(84, 10, dtype=dtype)),
        ]
    elif variant == "classic":
        layers = [
            ("pad", Pad2D(2, value=-MNIST_MEAN / MNIST_STD)),
            ("conv1", FastConv2D(1, 6, 5, dtype=dtype)),
            ("tanh1", ScaledTanh()),
            ("pool1", Subsample2D(6, 2, dtype=dtype)),
            ("tanh2", ScaledTanh()),
            ("conv2", FastConv2D(6, 16, 5, dtype=dtype)),
            ("tanh3", ScaledTanh()),
            ("pool2", Subsample2D(16, 2, dtype=dtype)),
            ("tanh4", ScaledTanh()),
            ("flatten", Flatten()),
            ("fc1", Linear(400, 120, dtype=dtype)),
            ("tanh5", ScaledTanh()),
            ("fc2", Linear(120, 84, dtype=dtype)),
            ("tanh6", ScaledTanh()),
            ("fc3", Linear(84, 10, dtype=dtype)),
        ]
    else:
        raise ValueError(f"variant must be one of {', '.join(LENET5_VARIANTS)}, got {variant!r}")
    return Sequential(layers, rng=np.random.default_rng(seed), threads=threads)


def lenet5_variant(model: Sequential) -> str | None:
    """Which :func:`lenet5` variant ``model`` is (its layers' names and configuration),
    or None for another network."""
    layers = [(name, repr(layer)) for name, layer in model.layers]
    for variant in LENET5_VARIANTS:
        built = lenet5(variant=variant).layers
        if layers == [(name, repr(layer)) for name, layer in built]:
            return variant
    return None
