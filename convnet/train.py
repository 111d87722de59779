"""Training and evaluation loops for digit classifiers.

One seeded generator drives everything random (initialisation, shuffling, augmentation,
the validation split), so a seed reproduces a run. The best epoch is chosen on a
validation split carved from the training data (:func:`choose_epoch`); the test set is
only ever evaluated at the end, never used to choose anything.

A run can keep a training-state file, rewritten atomically after every epoch, from which
an interrupted run resumes (``train(..., resume=path)``) and ends bit for bit where the
uninterrupted run would have ended: the parameters, the optimiser's buffers and step
count, the learning-rate schedule's position, the epoch, the history, the best epoch's
parameters and the state of every random generator. It is an ``.npz`` of arrays with one
JSON document, never a pickle (:data:`STATE_FORMAT`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from pyramids.io import NpzFileError, atomic_path, read_npz
from pyramids.parallel import blas_limited, resolve_threads

from .augment import check_distortions, random_affine
from .committee import MAX_MEMBERS, Committee
from .data import Dataset, normalise, validation_split
from .losses import cross_entropy, softmax
from .model import LENET5_INPUT_SHAPE, LENET5_VARIANTS, Sequential, lenet5
from .optim import EMA, SGD, Adam, CosineLR

__all__ = [
    "HISTORY_KEYS",
    "STATE_FORMAT",
    "TrainConfig",
    "TrainResult",
    "TrainStateError",
    "choose_epoch",
    "confusion_matrix",
    "curves_figure",
    "ema_decay",
    "evaluate",
    "member_seed",
    "predict",
    "save_curves",
    "thread_independent",
    "train",
]


def member_seed(seed: int, member: int) -> int:
    """The seed of a committee's member ``member`` (0-based) in a run seeded ``seed``.

    The first member's is ``seed`` itself, so that a committee's first member is the
    network a one-network run with that seed trains; the others' is the first 32-bit word
    of :class:`numpy.random.SeedSequence` ``([seed, member])``, so that runs with nearby
    seeds share no member (``seed + member`` would give run 0's second member to run 1).

    Examples
    --------
    >>> member_seed(7, 0)
    7
    >>> member_seed(7, 1) == member_seed(8, 1), member_seed(7, 1) == member_seed(8, 0)
    (False, False)
    """
    if member == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(member)]).generate_state(1)[0])


@dataclass
class TrainConfig:
    """Training settings; the defaults are the recipe (a committee of four 60-epoch
    networks, docs/design.md §5.12) that reached 98.96% on mnist-5k's test digits.

    Attributes
    ----------
    epochs, batch_size : int
    lr : float
        Peak learning rate (after warm-up) of the cosine schedule.
    optimizer : {'sgd', 'adam'}
        SGD with Nesterov momentum, or Adam.
    momentum, weight_decay : float
    warmup_epochs : float
        Linear warm-up at the start, in epochs.
    seed : int
        Seeds initialisation, shuffling, augmentation and the validation split.
    variant : {'relu', 'classic'}
        The :func:`~convnet.model.lenet5` variant trained when no model is given.
    val_fraction : float
        Share of the training data held out, per class, to choose the best epoch.
    augment : bool
        Random affine distortions of the training digits (±rotation degrees,
        1 ± scale, ±shift pixels, ±shear slant, 1 ± squeeze aspect, and an elastic field
        of strength ``elastic_alpha`` smoothed over ``elastic_sigma`` pixels), fresh
        every epoch; see :func:`convnet.augment.random_affine`.
    hflip : bool
        Also mirror half the training pictures left to right (clothes, not digits).
    ema : float
        Time constant, in epochs, of the exponential moving average of the weights
        (:class:`~convnet.optim.EMA`, decay ``1 - 1 / (ema · steps per epoch)``) that is
        validated, chosen and returned instead of the raw weights; 0 turns it off and
        returns the raw weights (docs/design.md §5.12).
    label_smoothing : float
        ``ε`` of the training loss's smoothed targets (:func:`~convnet.losses.cross_entropy`);
        the validation loss is always the plain cross-entropy.
    members : int
        Networks trained one after the other into a :class:`~convnet.committee.Committee`
        that averages their probabilities (docs/design.md §5.12); member ``m`` is trained
        exactly as a one-network run with seed :func:`member_seed(seed, m) <member_seed>`
        would be (its own initialisation, validation split, shuffling, augmentation and
        best epoch), so ``members=1`` is the one-network run itself.
    """

    epochs: int = 60
    batch_size: int = 64
    lr: float = 0.05
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 1e-3
    warmup_epochs: float = 1.0
    seed: int = 0
    variant: str = "relu"
    val_fraction: float = 0.1
    augment: bool = True
    rotation: float = 12.0
    scale: float = 0.10
    shift: float = 2.5
    shear: float = 0.3
    squeeze: float = 0.15
    order: int = 1
    elastic_alpha: float = 0.0
    elastic_sigma: float = 4.0
    hflip: bool = False
    ema: float = 14.0
    label_smoothing: float = 0.0
    members: int = 4

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting out of range."""
        if isinstance(self.members, bool) or not isinstance(self.members, int | np.integer):
            raise ValueError(f"members must be a whole number, got {self.members!r}")
        if not 1 <= self.members <= MAX_MEMBERS:
            raise ValueError(f"members must be in 1…{MAX_MEMBERS}, got {self.members}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not (np.isfinite(self.ema) and self.ema >= 0):
            raise ValueError(f"ema must be a number of epochs ≥ 0, got {self.ema}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {self.batch_size}")
        if not (np.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.variant not in LENET5_VARIANTS:
            raise ValueError(
                f"variant must be one of {', '.join(LENET5_VARIANTS)}, got {self.variant!r}"
            )
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.augment:
            check_distortions(
                LENET5_INPUT_SHAPE[-2:],
                rotation=self.rotation,
                scale=self.scale,
                shift=self.shift,
                shear=self.shear,
                squeeze=self.squeeze,
                elastic_alpha=self.elastic_alpha,
                elastic_sigma=self.elastic_sigma,
            )


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    model : Sequential or Committee
        Holding the parameters of the best epoch (of each member's best epoch).
    history : dict of str to list of float
        Per epoch: ``loss``, ``train_acc``, ``val_loss``, ``val_loss_se`` (its standard
        error), ``val_acc``, ``lr``,
        ``images_per_s``, ``seconds``. Empty for a committee: see ``members``.
    best_epoch : int
        1-based epoch whose parameters the model holds; 0 for a committee.
    config : TrainConfig
    members : list of TrainResult
        A committee's members' own results, in order (each with its own ``config``, whose
        ``seed`` is the member's); empty for one network.
    """

    model: Sequential | Committee
    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = 0
    config: TrainConfig | None = None
    members: list[TrainResult] = field(default_factory=list)

    def settings(self) -> dict:
        """The training settings as plain JSON-able values (with a committee's member
        seeds and best epochs)."""
        if not self.members:
            settings = {**asdict(self.config), "best_epoch": self.best_epoch}
        else:
            settings = {
                **asdict(self.config),
                "member_seeds": [r.config.seed for r in self.members],
                "best_epochs": [r.best_epoch for r in self.members],
            }
        # a numpy integer among the settings (validate takes one) becomes a plain one
        return json.loads(json.dumps(settings, default=_plain))


#: The per-epoch entries of :attr:`TrainResult.history`, in order.
HISTORY_KEYS = ("loss", "train_acc", "val_loss", "val_loss_se", "val_acc", "lr", "images_per_s",
                "seconds")  # fmt: skip


def evaluate(
    model: Sequential | Committee,
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int = 1000,
    *,
    threads: int | None = None,
) -> tuple[float, float, np.ndarray]:
    """Mean loss, accuracy and predicted labels of a model on normalised images.

    Parameters
    ----------
    model : Sequential or Committee
    images : ndarray, shape (N, 1, H, W), float
        Fed in the parameters' dtype, as by :func:`predict`.
    labels : ndarray of int, shape (N,)
    batch_size : int
    threads : int, optional
        As for :func:`predict`.

    Returns
    -------
    loss : float
    accuracy : float
        In ``[0, 1]``.
    predictions : ndarray of int, shape (N,)
    """
    probs = predict(model, images, batch_size, threads=threads)
    pred = probs.argmax(axis=1)
    return float(_sample_losses(probs, labels).mean()), float((pred == labels).mean()), pred


def _sample_losses(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cross-entropy of every sample, ``-log p[label]`` (floored at 1e-30)."""
    return -np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-30))


def predict(
    model: Sequential | Committee,
    images: np.ndarray,
    batch_size: int = 1000,
    *,
    threads: int | None = None,
) -> np.ndarray:
    """Class probabilities ``(N, classes)`` of normalised images ``(N, 1, H, W)``.

    Parameters
    ----------
    model : Sequential or Committee
        A committee's probabilities are the mean of its members'.
    images : ndarray, shape (N, 1, H, W), float
        Each batch is fed in the dtype of the model's parameters (a float64 checkpoint
        takes the float32 images :func:`~convnet.data.normalise` makes by default, as
        :func:`convnet.inspect.feature_maps` does); other dtypes are passed on unchanged.
    batch_size : int
        Images per forward pass.
    threads : int, optional
        Threads the chunks of each batch run on (default: the model's, see
        :class:`~convnet.model.Sequential`). The result does not depend on it, nor on the
        number of threads BLAS may use (see :func:`thread_independent`).
    """
    params = list(model.parameters().values())
    dtype = params[0].dtype if params else None

    def batch(i: int) -> np.ndarray:
        x = images[i : i + batch_size]
        if dtype is not None and isinstance(x, np.ndarray) and x.dtype.kind == "f":
            x = x.astype(dtype, copy=False)
        return x

    was_training = model.training
    model.eval()
    try:
        with thread_independent():
            out = [
                softmax(model.forward(batch(i), threads=threads))
                for i in range(0, len(images), batch_size)
            ]
            if not out:  # no images: no rows, one column per class (one blank image's count)
                blank = np.zeros((1, *np.shape(images)[1:]), dtype or np.float32)
                out = [softmax(model.forward(blank, threads=threads))[:0]]
    finally:  # the model's mode as it was, also when a batch is refused
        model.train(was_training)
    return np.concatenate(out)


@contextlib.contextmanager
def thread_independent() -> Iterator[bool]:
    """Hold BLAS to one thread for every product computed inside the block.

    OpenBLAS does not always compute a matrix product the same way on one thread and on
    several (products with 784-long rows differ in the last bit on the Haswell kernel), so
    every product of a run must see the same BLAS thread count for the run to give the
    same result bit for bit whatever thread count it is given. The chunks of a large batch
    already hold BLAS to one thread (:mod:`convnet.model`); this holds it there for
    everything else as well (a batch small enough to run whole, the augmentation, the
    validation pass). How many threads the chunks run on is a separate, explicit choice
    (the ``threads`` arguments), never read from BLAS.

    Enter it from the thread that calls the network, the main thread in a program: this
    OpenBLAS ignores a limit asked for from another thread once the main thread has set
    one (:func:`pyramids.parallel.blas_limited`), and then results may depend on the BLAS
    threads after all. Yields whether the limit is in force.
    """
    with blas_limited() as effective:
        yield effective


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, classes: int = 10) -> np.ndarray:
    """Counts of (true, predicted) label pairs: rows are true labels, columns predictions.

    Parameters
    ----------
    labels : ndarray of int, shape (N,)
        The true labels, in ``0 … classes - 1``.
    predictions : ndarray of int, shape (N,)
        The predicted labels.
    classes : int

    Returns
    -------
    ndarray of int64, shape (classes, classes)
        ``m[true, predicted]``: row ``i`` holds the digits whose true label is ``i``, spread
        over the labels they were given, so the diagonal counts the correct answers.

    Examples
    --------
    >>> confusion_matrix(np.array([0, 0, 1]), np.array([1, 1, 1]), classes=2)
    array([[0, 2],
           [0, 1]])
    """
    m = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(m, (labels, predictions), 1)
    return m


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, unit="batch", file=sys.stderr)


def train(
    data: Dataset,
    config: TrainConfig | None = None,
    *,
    model: Sequential | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
    train_subset: int | None = None,
    state_path: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    threads: int | None = None,
) -> TrainResult:
    """Train LeNet-5 (or ``model``) on a :class:`~convnet.data.Dataset`.

    Parameters
    ----------
    data : Dataset
        Only its training part is used; the test part is not touched.
    config : TrainConfig, optional
        Defaults to :class:`TrainConfig()`.
    model : Sequential or Committee, optional
        Defaults to ``lenet5(seed=config.seed, variant=config.variant)``, or for a
        committee (``config.members`` > 1) to one such network per member, seeded
        :func:`member_seed`; a given committee must have ``config.members`` members.
    log : callable
        Receives one line per epoch, ``"epoch   3/120  loss …"``, once that epoch's state is
        written, and on resuming first ``"resumed from PATH after epoch K/EPOCHS"``.
    progress : bool
        Show a tqdm bar per epoch (on stderr).
    train_subset : int, optional
        Use only the first this many training images (for quick runs and tests).
    state_path : str or path-like, optional
        Write the training state here after every epoch, atomically (see the module
        docstring); None (default) writes none. The file is left in place at the end: the
        caller removes it once the trained model is safely saved.
    resume : str or path-like, optional
        Continue from a training-state file written by a run with the same data, settings,
        ``train_subset`` and architecture; a state written after the last epoch returns
        that run's result at once. It may be the same file as ``state_path``.
    threads : int, optional
        Threads the chunks of every batch run on (default: the model's, see
        :class:`~convnet.model.Sequential`, whose own default is
        :func:`pyramids.parallel.default_threads`). The trained weights do not depend on
        it: BLAS is held to one thread for the whole run (:func:`thread_independent`).

    Returns
    -------
    TrainResult

    Raises
    ------
    TrainStateError
        If ``resume`` cannot be read as a training state or belongs to another run (it
        names what differs); a :class:`ValueError`.
    ValueError
        If ``threads`` is not a positive integer, or a setting is out of range.
    FileNotFoundError
        If ``resume`` does not exist.
    """
    config = config or TrainConfig()
    config.validate()
    if threads is not None:
        resolve_threads(threads)  # a bad count is refused before any work
    images, labels = data.train_images, data.train_labels
    if train_subset is not None:
        images, labels = images[:train_subset], labels[:train_subset]
    if config.members == 1 and (model is None or isinstance(model, Sequential)):
        networks = [model or lenet5(seed=config.seed, variant=config.variant)]
    elif model is None:
        networks = [
            lenet5(seed=member_seed(config.seed, m), variant=config.variant)
            for m in range(config.members)
        ]
    elif isinstance(model, Committee) and len(model) == config.members:
        networks = list(model.members)
    else:  # one line: a Sequential's repr spans many
        given = (
            f"a Committee of {len(model)}"
            if isinstance(model, Committee)
            else f"a {type(model).__name__}"
        )
        wanted = "a Sequential" if config.members == 1 else f"a Committee of {config.members}"
        raise ValueError(
            f"model must be {wanted} (or None) for members={config.members}, got {given}"
        )
    # One identity and one state file for the whole run: the members share an
    # architecture, and the state holds the finished members (see STATE_FORMAT).
    run = _run_identity(config, networks[0], images, labels, train_subset)
    saved = None
    if resume is not None:
        saved = _read_state(resume, run, networks[0], config.ema > 0, config.members)
    results: list[TrainResult] = []
    first = 0 if saved is None else saved["member"]
    for m in range(first):  # finished before the interruption: their chosen parameters
        done = saved["finished"][m]
        networks[m].load_state_dict(done["best"])
        networks[m].eval()
        own = replace(config, seed=member_seed(config.seed, m), members=1)
        results.append(TrainResult(networks[m], done["history"], done["best_epoch"], own))
    for m in range(first, config.members):
        results.append(
            _train_network(
                images,
                labels,
                config,
                networks[m],
                member=m,
                finished=results,
                run=run,
                saved=saved if m == first else None,
                resume=resume,
                log=log,
                progress=progress,
                state_path=state_path,
                threads=threads,
            )
        )
    if config.members == 1:
        return results[0]
    return TrainResult(Committee(networks), {}, 0, config, members=results)


def _train_network(
    images: np.ndarray,
    labels: np.ndarray,
    run_config: TrainConfig,
    model: Sequential,
    *,
    member: int,
    finished: list[TrainResult],
    run: dict,
    saved: dict | None,
    resume: str | os.PathLike | None,
    log: Callable[[str], None],
    progress: bool,
    state_path: str | os.PathLike | None,
    threads: int | None,
) -> TrainResult:
    """Train one network, member ``member`` of the run (0 for a one-network run), from
    the state ``saved`` when given; ``finished`` are the members before it, written into
    every state file along with its own progress."""
    config = run_config
    if run_config.members > 1:
        config = replace(run_config, seed=member_seed(run_config.seed, member), members=1)
    rng = np.random.default_rng(config.seed)
    train_idx, val_idx = validation_split(labels, config.val_fraction, config.seed)
    pixels = images[train_idx].astype(np.float32) / np.float32(255)
    y_train = labels[train_idx]
    x_val, y_val = normalise(images[val_idx]), labels[val_idx]
    n = len(train_idx)
    steps = -(-n // config.batch_size)
    params = model.parameters()
    if config.optimizer == "sgd":
        opt = SGD(params, config.lr, config.momentum, nesterov=config.momentum > 0,
                  weight_decay=config.weight_decay)  # fmt: skip
    else:
        opt = Adam(params, config.lr, weight_decay=config.weight_decay)
    total = steps * config.epochs
    warmup = min(int(config.warmup_epochs * steps), total - 1)
    schedule = CosineLR(opt, total=total, warmup=warmup)
    average = EMA(params, ema_decay(config.ema, steps)) if config.ema > 0 else None
    keys = HISTORY_KEYS
    history: dict[str, list[float]] = {k: [] for k in keys}
    # Only the epoch chosen so far can still be the final choice (see choose_epoch), so its
    # parameters are the only ones kept.
    best_epoch, best_state = 0, model.state_dict()
    # Log lines of a committee's members say which member they are about.
    who = "" if run_config.members == 1 else f"member {member + 1}/{run_config.members}  "
    first = 1
    if saved is not None:
        done = saved["epoch"] * steps
        counts = [saved["schedule"].get("count"), saved["optimizer"]["steps"]]
        if average is not None:
            counts.append(saved["ema"]["steps"])
        if any(count != done for count in counts):
            raise TrainStateError(
                f"{os.fspath(resume)}: the schedule and optimiser have not taken the "
                f"{done} steps of {saved['epoch']} epochs"
            )
        try:  # each load checks everything before it changes anything
            opt.load_state_dict(saved["optimizer"])
            schedule.load_state_dict(saved["schedule"])
            model.load_state_dict(saved["params"])
            if average is not None:
                average.load_state_dict(saved["ema"])
        except ValueError as exc:
            raise TrainStateError(f"{os.fspath(resume)}: {exc}") from None
        rng.bit_generator.state = saved["rng"]
        for name, state in saved["layer_rngs"].items():
            _layer_rngs(model)[name].bit_generator.state = state
        history = saved["history"]
        best_epoch, best_state = saved["best_epoch"], saved["best"]
        first = saved["epoch"] + 1
        log(f"resumed from {os.fspath(resume)} after {who}epoch {saved['epoch']}/{config.epochs}")
    model.train()
    # Every BLAS call of the run on one thread, whatever the caller allows (see
    # thread_independent); the chunks run on `threads` threads.
    with thread_independent():
        for epoch in range(first, config.epochs + 1):
            loss, acc, lr, seconds = _train_epoch(
                model, opt, schedule, rng, pixels, y_train, config, epoch, progress, threads,
                average,
            )  # fmt: skip
            # With an average, it is what is validated, chosen and returned.
            with _holding(model, average):
                val_loss, val_se, val_acc = _validate(model, x_val, y_val, threads)
            rate = n / seconds
            row = (loss, acc, val_loss, val_se, val_acc, lr, rate, seconds)
            for k, v in zip(keys, row, strict=True):
                history[k].append(float(v))
            chosen = choose_epoch(history["val_loss"], history["val_loss_se"])
            if chosen == epoch:
                best_epoch = epoch
                weights = model.state_dict(copy=False) if average is None else average.average
                best_state = {k: v.copy() for k, v in weights.items()}
            elif chosen != best_epoch:  # pragma: no cover - impossible by choose_epoch's rule
                raise RuntimeError(f"epoch {chosen} was chosen after its parameters were dropped")
            if state_path is not None:
                _write_state(
                    state_path,
                    run=run,
                    epoch=epoch,
                    model=model,
                    optimizer=opt,
                    schedule=schedule,
                    rng=rng,
                    average=average,
                    history=history,
                    best_epoch=best_epoch,
                    best=best_state,
                    member=member,
                    finished=finished,
                )
            log(
                f"{who}epoch {epoch:3d}/{config.epochs}  loss {loss:.4f}  "
                f"train acc {100 * acc:6.2f}%  val acc {100 * val_acc:6.2f}%  lr {lr:.4f}  "
                f"{rate:,.0f} images/s"
            )
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(model, history, best_epoch, config)


# --------------------------------------------------------------------------- training state

#: Format tag of a training-state file. The file is an ``.npz`` archive: ``param:<name>``
#: (the parameters after the last finished epoch), ``best:<name>`` (those of the epoch
#: chosen so far), ``opt:<buffer>:<name>`` (the optimiser's buffers), ``ema:<name>`` (the
#: weight average, when :attr:`TrainConfig.ema` is on) and ``meta``, a 0-d
#: string array holding one JSON document (the run's identity, the epoch, the history,
#: the optimiser's step count and rate, the schedule's position, the average's step count
#: and the generators' ``bit_generator.state``). A committee's state describes the member
#: in training so (``meta["member"]``, 0-based) and holds as well every member finished
#: before it: ``member<m>:<name>`` (its chosen parameters) and ``meta["finished"]`` (its
#: history and best epoch); a one-network run's has neither.
STATE_FORMAT = "convnet-train-state/1"


class TrainStateError(ValueError):
    """A training-state file cannot be read, or belongs to another run."""


def _layer_rngs(model: Sequential) -> dict[str, np.random.Generator]:
    """The generators layers draw from while training (Dropout's masks), by layer name."""
    return {
        name: layer.rng
        for name, layer in model.layers
        if isinstance(getattr(layer, "rng", None), np.random.Generator)
    }


def _run_identity(
    config: TrainConfig,
    model: Sequential,
    images: np.ndarray,
    labels: np.ndarray,
    train_subset: int | None,
) -> dict:
    """What a resumed run must share with the run that wrote the state, as JSON values."""
    digest = hashlib.sha256()
    for array in (images, labels):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.data)
    identity = {
        "config": asdict(config),
        "train_subset": train_subset,
        "data": {"images": len(labels), "sha256": digest.hexdigest()},
        "model": [[name, repr(layer)] for name, layer in model.layers],
        "parameters": {
            k: [list(v.shape), v.dtype.str] for k, v in model.state_dict(copy=False).items()
        },
        "layer_rngs": sorted(_layer_rngs(model)),
    }
    # Through JSON and back, so that it compares equal to what a state file holds (a numpy
    # integer among the settings becomes a plain one).
    return json.loads(json.dumps(identity, default=_plain))


def _plain(value: object) -> object:
    """A numpy scalar as the Python number it holds (for ``json.dumps``)."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _write_state(
    path: str | os.PathLike,
    *,
    run: dict,
    epoch: int,
    model: Sequential,
    optimizer: SGD | Adam,
    schedule: CosineLR,
    rng: np.random.Generator,
    average: EMA | None,
    history: Mapping[str, list[float]],
    best_epoch: int,
    best: Mapping[str, np.ndarray],
    member: int = 0,
    finished: list[TrainResult] = (),
) -> None:
    """Write a training state atomically (a temporary file renamed onto ``path``); a
    committee's (``run`` of more than one member) with its finished members."""
    opt_state = optimizer.state_dict()
    buffers = [k for k in opt_state if k not in ("steps", "lr")]
    meta = {
        "format": STATE_FORMAT,
        "run": run,
        "epoch": epoch,
        "best_epoch": best_epoch,
        "history": history,
        "optimizer": {"steps": opt_state["steps"], "lr": opt_state["lr"], "buffers": buffers},
        "schedule": schedule.state_dict(),
        "ema_steps": None if average is None else average.steps,
        "rng": rng.bit_generator.state,
        "layer_rngs": {k: g.bit_generator.state for k, g in _layer_rngs(model).items()},
    }
    if run["config"]["members"] > 1:
        meta["member"] = member
        meta["finished"] = [{"history": r.history, "best_epoch": r.best_epoch} for r in finished]
    arrays = {"meta": np.array(json.dumps(meta, allow_nan=True))}
    for m, result in enumerate(finished):
        arrays.update(
            {f"member{m}:{k}": v for k, v in result.model.state_dict(copy=False).items()}
        )
    arrays.update({f"param:{k}": v for k, v in model.state_dict(copy=False).items()})
    arrays.update({f"best:{k}": v for k, v in best.items()})
    if average is not None:
        arrays.update({f"ema:{k}": v for k, v in average.average.items()})
    for buffer in buffers:
        arrays.update({f"opt:{buffer}:{k}": v for k, v in opt_state[buffer].items()})
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _differences(saved: object, expected: dict) -> list[str]:
    """What differs between a saved run identity and this run's, in words."""
    if not isinstance(saved, dict):
        return ["no run description"]
    out = []
    config, own = saved.get("config"), expected["config"]
    if isinstance(config, dict) and "members" not in config:
        config = {**config, "members": 1}  # written before committees: one network
    if isinstance(config, dict):
        for key in sorted(set(config) | set(own)):
            if config.get(key, "(absent)") != own.get(key, "(absent)"):
                was = config.get(key, "(absent)")
                out.append(f"{key} {was!r} in the state, {own.get(key, '(absent)')!r} now")
    else:
        out.append("no training settings")
    words = {
        "train_subset": "train_subset",
        "data": "training data",
        "model": "architecture",
        "parameters": "parameter shapes",
        "layer_rngs": "layer generators",
    }
    for key, word in words.items():
        if saved.get(key) != expected[key]:
            if key == "train_subset":
                out.append(f"train_subset {saved.get(key)!r} in the state, {expected[key]!r} now")
            else:
                out.append(f"another {word}")
    return out


def _read_state(
    path: str | os.PathLike,
    run: dict,
    model: Sequential,
    averaged: bool = False,
    members: int = 1,
) -> dict:
    """Read and check a training state written by :func:`_write_state` for this run
    (with a weight average when ``averaged``; of a committee of ``members`` networks of
    ``model``'s architecture when more than one)."""
    path = Path(path)
    if not path.is_file():
        if path.is_dir():
            raise TrainStateError(f"{path}: is a directory, not a training-state file")
        raise FileNotFoundError(2, "No such file or directory", str(path))

    def select(name: str, shape: tuple, dtype: np.dtype) -> bool:
        if name == "meta" and (shape != () or dtype.kind != "U"):
            raise TrainStateError(f"{path}: meta must be one JSON string, got {dtype} {shape}")
        if name != "meta" and dtype.kind not in "fiu":
            raise TrainStateError(f"{path}: {name} holds {dtype} values, not numbers")
        return True

    try:
        arrays = read_npz(path, select=select)
    except NpzFileError as exc:
        raise TrainStateError(f"{path}: not a readable training-state file ({exc})") from None
    try:
        meta = json.loads(str(arrays.pop("meta")[()]))
        if meta.get("format") != STATE_FORMAT:
            raise TrainStateError(
                f"{path}: format {meta.get('format')!r}, expected {STATE_FORMAT!r}"
            )
        differences = _differences(meta.get("run"), run)
        if differences:
            raise TrainStateError(
                f"{path}: the training state is of another run ({'; '.join(differences)})"
            )
        epoch, best_epoch = meta["epoch"], meta["best_epoch"]
        epochs = run["config"]["epochs"]
        if not (isinstance(epoch, int) and 1 <= epoch <= epochs):
            raise TrainStateError(f"{path}: epoch {epoch!r} is not in 1…{epochs}")
        if not (isinstance(best_epoch, int) and 1 <= best_epoch <= epoch):
            raise TrainStateError(f"{path}: best epoch {best_epoch!r} is not in 1…{epoch}")
        _check_history(path, meta["history"], epoch)
        history = meta["history"]
        member, finished = meta.get("member", 0), meta.get("finished", [])
        if members > 1:
            if not (isinstance(member, int) and 0 <= member < members):
                raise TrainStateError(f"{path}: member {member!r} is not in 0…{members - 1}")
            if not (isinstance(finished, list) and len(finished) == member):
                raise TrainStateError(
                    f"{path}: the state does not hold the {member} members finished before "
                    f"member {member}"
                )
            for done in finished:
                _check_history(path, done["history"], epochs)
                if not (isinstance(done["best_epoch"], int) and 1 <= done["best_epoch"] <= epochs):
                    raise TrainStateError(
                        f"{path}: best epoch {done['best_epoch']!r} is not in 1…{epochs}"
                    )
        names = model.state_dict(copy=False)
        opt_meta = meta["optimizer"]
        groups: dict[str, dict[str, np.ndarray]] = {"param": {}, "best": {}}
        groups.update({f"opt:{b}": {} for b in opt_meta["buffers"]})
        groups.update({f"member{m}": {} for m in range(len(finished) if members > 1 else 0)})
        if averaged:
            groups["ema"] = {}
        for key, value in arrays.items():
            group, _, name = key.rpartition(":")
            if group not in groups:
                raise TrainStateError(f"{path}: unexpected entry {key!r}")
            groups[group][name] = value
        for group, values in groups.items():
            if set(values) != set(names):
                raise TrainStateError(f"{path}: the {group!r} arrays do not match the model")
        # The parameters and the optimiser's buffers are checked as they are loaded; the
        # chosen epoch's parameters are loaded only at the end of the run (the finished
        # members' at its start, after every check), so here.
        chosen = ["best", *(g for g in groups if g.startswith("member"))]
        for group in chosen:
            for name, value in groups[group].items():
                if value.shape != names[name].shape:
                    raise TrainStateError(
                        f"{path}: {group}:{name} has shape {value.shape}, the model's is "
                        f"{names[name].shape}"
                    )
        optimizer = {"steps": opt_meta["steps"], "lr": opt_meta["lr"]}
        optimizer.update({b: groups[f"opt:{b}"] for b in opt_meta["buffers"]})
        rng_state = meta["rng"]
        layer_rngs = meta["layer_rngs"]
        targets = _layer_rngs(model)
        if not isinstance(layer_rngs, dict) or set(layer_rngs) != set(targets):
            raise TrainStateError(f"{path}: the layer generators do not match the model")
        _check_rng_state(path, rng_state, np.random.default_rng())
        for name, state in layer_rngs.items():
            _check_rng_state(path, state, targets[name])
        schedule = meta["schedule"]
        if not isinstance(schedule, dict) or not isinstance(opt_meta, dict):
            raise TrainStateError(f"{path}: malformed optimiser or schedule state")
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise TrainStateError(f"{path}: malformed training state ({exc!r})") from None
    if any(not np.isfinite(v).all() for g in groups.values() for v in g.values()):
        raise TrainStateError(f"{path}: the training state contains NaN or infinite values")
    return {
        "params": groups["param"],
        "best": groups["best"],
        "ema": {"steps": meta.get("ema_steps"), "average": groups.get("ema")},
        "optimizer": optimizer,
        "schedule": schedule,
        "rng": rng_state,
        "layer_rngs": layer_rngs,
        "history": {k: [float(x) for x in v] for k, v in history.items()},
        "epoch": epoch,
        "best_epoch": best_epoch,
        "member": member if members > 1 else 0,
        "finished": [
            {
                "best": groups[f"member{m}"],
                "best_epoch": done["best_epoch"],
                "history": {k: [float(x) for x in v] for k, v in done["history"].items()},
            }
            for m, done in enumerate(finished if members > 1 else [])
        ],
    }


def _check_history(path: Path, history: object, epochs: int) -> None:
    """Refuse a history that is not one list of numbers per key, for epochs 1…``epochs``."""
    if not (
        isinstance(history, dict)
        and set(history) == set(HISTORY_KEYS)
        and all(isinstance(v, list) and len(v) == epochs for v in history.values())
    ):
        raise TrainStateError(f"{path}: the history does not cover epochs 1…{epochs}")


def _check_rng_state(path: Path, state: object, like: np.random.Generator) -> None:
    """Refuse a generator state that a generator of the kind of ``like`` would not take."""
    try:
        type(like.bit_generator)().state = state
    except (TypeError, ValueError, KeyError) as exc:
        raise TrainStateError(f"{path}: a generator state is malformed ({exc})") from None


def _train_epoch(
    model: Sequential,
    opt: SGD | Adam,
    schedule: CosineLR,
    rng: np.random.Generator,
    pixels: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig,
    epoch: int,
    progress: bool,
    threads: int | None,
    average: EMA | None = None,
) -> tuple[float, float, float, float]:
    """One pass over freshly shuffled (and distorted) training digits, folding the
    weights after every step into ``average`` if one is given.

    Returns the mean loss, the accuracy, the learning rate at the start and the seconds.
    """
    start = time.perf_counter()
    n, size = len(labels), config.batch_size
    order = rng.permutation(n)
    batch = pixels[order]
    if config.augment:
        batch = random_affine(
            batch,
            rng,
            rotation=config.rotation,
            scale=config.scale,
            shift=config.shift,
            shear=config.shear,
            squeeze=config.squeeze,
            order=config.order,
            elastic_alpha=config.elastic_alpha,
            elastic_sigma=config.elastic_sigma,
            hflip=config.hflip,
        )
    x_epoch, y_epoch = normalise(batch), labels[order]
    loss_sum, correct = 0.0, 0
    lr = opt.lr
    steps = -(-n // size)
    diverged = f"the loss diverged in epoch {epoch}; lower --lr"

    def chunk_loss(z: np.ndarray, rows: slice, yb: np.ndarray) -> tuple[float, np.ndarray]:
        # Logits that overflowed are a diverged run (a runtime failure), not the bad
        # input cross_entropy would call them.
        if not np.isfinite(z).all():
            raise FloatingPointError(diverged)
        return cross_entropy(z, yb[rows], count=len(yb), smoothing=config.label_smoothing)

    for s in _progress(range(steps), steps, f"epoch {epoch}/{config.epochs}", progress):
        xb, yb = x_epoch[s * size : (s + 1) * size], y_epoch[s * size : (s + 1) * size]
        # Each chunk's forward pass, loss and backward pass in one go (docs/design.md
        # §5.10); the gradients are those of the whole batch's mean loss.
        loss, logits = model.train_step(
            xb, lambda z, rows, yb=yb: chunk_loss(z, rows, yb), threads=threads
        )
        opt.step(model.grads())
        schedule.step()
        if average is not None:
            average.update()
        if not np.isfinite(loss):
            raise FloatingPointError(diverged)
        loss_sum += loss * len(yb)
        correct += int((logits.argmax(axis=1) == yb).sum())
    return loss_sum / n, correct / n, lr, time.perf_counter() - start


def ema_decay(epochs: float, steps_per_epoch: int) -> float:
    """The per-step decay of a weight average whose time constant is ``epochs`` epochs.

    ``1 - 1 / (epochs · steps_per_epoch)``, at least 0 (an average over one step).

    Examples
    --------
    >>> ema_decay(10, 100)
    0.999
    """
    return max(0.0, 1 - 1 / (epochs * steps_per_epoch))


@contextlib.contextmanager
def _holding(model: Sequential, average: EMA | None) -> Iterator[None]:
    """Hold the averaged weights in the model for the block (nothing without an average);
    the raw weights return afterwards, bit for bit."""
    if average is None:
        yield
        return
    raw = model.state_dict()
    model.load_state_dict(average.average)
    try:
        yield
    finally:
        model.load_state_dict(raw)


def _validate(
    model: Sequential, x_val: np.ndarray, y_val: np.ndarray, threads: int | None
) -> tuple[float, ...]:
    """Mean validation loss, its standard error and the accuracy (NaN without digits)."""
    if not len(y_val):
        return float("nan"), float("nan"), float("nan")
    probs = predict(model, x_val, threads=threads)
    losses = _sample_losses(probs, y_val)
    se = losses.std(ddof=1) / np.sqrt(len(losses)) if len(losses) > 1 else 0.0
    return float(losses.mean()), float(se), float((probs.argmax(axis=1) == y_val).mean())


def choose_epoch(val_loss: list[float], val_loss_se: list[float]) -> int:
    """The 1-based epoch to keep: the latest within one standard error of the best.

    A validation set of a few hundred digits measures a model only roughly, so the single
    best score is often an early epoch that was lucky on those digits. The one-standard-
    error rule (Breiman et al., 1984) keeps instead the latest epoch, the one trained
    longest at the lowest learning rate, whose mean validation loss is within one standard
    error of the lowest: at most the lowest plus the larger of the two epochs' standard
    errors (the lucky minimum's own is the smaller, since it was lucky). The loss is used
    rather than the accuracy because it moves continuously: on 500 digits the accuracy
    moves in steps of 0.2% and can reach 100%, where its standard error vanishes. Without a
    validation set (NaN losses) the last epoch is kept.

    Examples
    --------
    >>> choose_epoch([0.30, 0.05, 0.058, 0.07], [0.02, 0.01, 0.01, 0.01])  # 0.058 ≤ 0.05 + 0.01
    3
    """
    loss = np.asarray(val_loss, dtype=float)
    if not np.isfinite(loss).any():
        return len(loss)
    best = int(np.nanargmin(loss))
    margin = np.maximum(np.asarray(val_loss_se, dtype=float), val_loss_se[best])
    return int(np.flatnonzero(loss <= loss[best] + margin + 1e-12)[-1]) + 1


# --------------------------------------------------------------------------- learning curves


def curves_figure(
    history: Mapping[str, list[float]], best_epoch: int, title: str, *, augmented: bool
):
    """Loss and accuracy per epoch, training and validation, as a matplotlib Figure.

    The accuracy axis spans the accuracies plotted (with a margin of 5% of their range,
    at least half a point), so that a short run's curves are seen whole. The training
    curves are labelled "(augmented)" only when the training digits were distorted.

    Parameters
    ----------
    history : mapping
        :attr:`TrainResult.history` (``loss``, ``val_loss``, ``train_acc``, ``val_acc``).
    best_epoch : int
        Marked with a dotted line.
    title : str
    augmented : bool
        Whether the training curves were measured on distorted digits
        (:attr:`TrainConfig.augment`).

    Returns
    -------
    matplotlib.figure.Figure
        Made without pyplot, so that no global backend or figure state is touched.
    """
    from matplotlib.figure import Figure

    epochs = np.arange(1, len(history["loss"]) + 1)
    training = "training (augmented)" if augmented else "training"
    fig = Figure(figsize=(10, 3.8))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(epochs, history["loss"], label=training)
    ax1.plot(epochs, history["val_loss"], label="validation")
    ax1.set(xlabel="epoch", ylabel="cross-entropy", yscale="log", title="loss")
    accuracy = 100 * np.asarray([history["train_acc"], history["val_acc"]], dtype=float)
    ax2.plot(epochs, accuracy[0], label=training)
    ax2.plot(epochs, accuracy[1], label="validation")
    ax2.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    shown = accuracy[np.isfinite(accuracy)]
    if shown.size:
        low, high = shown.min(), shown.max()
        margin = max(0.5, 0.05 * (high - low))
        ax2.set_ylim(low - margin, high + margin)
    for ax in (ax1, ax2):
        ax.axvline(best_epoch, color="grey", ls=":", label=f"best epoch ({best_epoch})")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_curves(
    history: Mapping[str, list[float]],
    path: str | os.PathLike,
    best_epoch: int,
    title: str,
    *,
    augmented: bool,
) -> None:
    """Write :func:`curves_figure` to a PNG, atomically (never a half-written file).

    Parameters
    ----------
    history, best_epoch, title, augmented
        As for :func:`curves_figure`.
    path : str or path-like
        The PNG to write.
    """
    fig = curves_figure(history, best_epoch, title, augmented=augmented)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
