"""The ``convnet`` command: train, evaluate and use a LeNet-5 digit classifier.

    convnet train [--data DIR | --download] [--epochs N] [--batch-size N] [--lr X]
                  [--optimizer sgd|adam] [--seed N] [--out model.npz] [--plot curves.png]
    convnet evaluate MODEL --data DIR [--json]
    convnet predict MODEL IMAGE... [--json]

Errors in the input (missing or corrupt files, images of the wrong size, NaN, a checkpoint
of another architecture) end the command with one line on stderr and exit status 1; a
wrong command line with exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not a usage block
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (np.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _build_parser() -> argparse.ArgumentParser:
    from .train import TrainConfig

    d = TrainConfig()
    parser = _Parser(prog="convnet", description="LeNet-5 digit classifier, numpy only.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train LeNet-5 and save a checkpoint")
    t.add_argument("--data", metavar="DIR", help="MNIST-style directory (the four IDX files)")
    t.add_argument(
        "--download",
        action="store_true",
        help="download MNIST into the cache (or into --data DIR) first",
    )
    t.add_argument("--epochs", type=_positive_int, default=d.epochs)
    t.add_argument("--batch-size", type=_positive_int, default=d.batch_size)
    t.add_argument("--lr", type=_positive_float, default=d.lr, help="peak learning rate")
    t.add_argument("--optimizer", choices=("sgd", "adam"), default=d.optimizer)
    t.add_argument("--seed", type=int, default=d.seed)
    t.add_argument("--val-fraction", type=float, default=d.val_fraction)
    t.add_argument("--no-augment", action="store_true", help="no random affine distortions")
    t.add_argument("--out", default="model.npz", help="checkpoint file (default model.npz)")
    t.add_argument("--plot", metavar="PNG", help="write learning curves to this PNG")
    t.add_argument("--threads", type=_positive_int, help="BLAS threads (default: library's)")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")

    e = sub.add_parser("evaluate", help="test accuracy of a checkpoint on a data directory")
    e.add_argument("model")
    e.add_argument("--data", metavar="DIR", required=True)
    e.add_argument("--json", action="store_true", help="print one JSON document")

    p = sub.add_parser("predict", help="classify image files of digits")
    p.add_argument("model")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    return parser


# --------------------------------------------------------------------------- helpers


def _threads(n: int | None):
    if n is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=n, user_api="blas")


def _resolve_data(args):
    from .data import FILES, default_cache_dir, embedded_digits, load_mnist
    from .download import download_mnist

    if args.download:
        target = Path(args.data) if args.data else default_cache_dir()
        download_mnist(target, log=lambda line: print(line, file=sys.stderr))
        return load_mnist(target, name=f"MNIST from {target}")
    if args.data:
        return load_mnist(args.data)
    cache = default_cache_dir()
    if all((cache / f).is_file() for f in FILES):
        return load_mnist(cache, name=f"MNIST from the cache {cache}")
    data = embedded_digits()
    data.name += " (no MNIST in the cache; pass --data DIR or --download for MNIST)"
    return data


def _confusion_text(matrix: np.ndarray) -> str:
    k = len(matrix)
    width = max(4, len(str(matrix.max())) + 1)
    lines = ["true\\pred" + "".join(f"{j:>{width}}" for j in range(k))]
    lines += [f"{i:>9}" + "".join(f"{v:>{width}}" for v in row) for i, row in enumerate(matrix)]
    return "\n".join(lines)


def _check_image_size(images: np.ndarray, where: str) -> None:
    from .model import LENET5_INPUT_SHAPE

    if images.shape[1:] != LENET5_INPUT_SHAPE[1:]:
        raise ValueError(
            f"{where}: images are {images.shape[1]}x{images.shape[2]}, the model takes "
            f"{LENET5_INPUT_SHAPE[1]}x{LENET5_INPUT_SHAPE[2]}"
        )


def save_curves(history: dict, path: str | os.PathLike, best_epoch: int, title: str) -> None:
    """Plot loss and accuracy per epoch (training and validation) to a PNG, atomically."""
    import matplotlib

    from pyramids.io import atomic_path

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.plot(epochs, history["loss"], label="training (augmented)")
    ax1.plot(epochs, history["val_loss"], label="validation")
    ax1.set(xlabel="epoch", ylabel="cross-entropy", yscale="log", title="loss")
    ax2.plot(epochs, 100 * np.asarray(history["train_acc"]), label="training (augmented)")
    ax2.plot(epochs, 100 * np.asarray(history["val_acc"]), label="validation")
    top = max(history["val_acc"] + history["train_acc"])
    ax2.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy", ylim=(90, 100 * top + 0.5))
    for ax in (ax1, ax2):
        ax.axvline(best_epoch, color="grey", ls=":", label=f"best epoch ({best_epoch})")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------- commands


def _train(args) -> int:
    from .checkpoint import save_checkpoint
    from .data import normalise
    from .train import TrainConfig, confusion_matrix, evaluate, train

    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        seed=args.seed,
        val_fraction=args.val_fraction,
        augment=not args.no_augment,
    )
    config.validate()
    for target in filter(None, (args.out, args.plot)):
        parent = Path(target).parent
        if not parent.is_dir():
            raise FileNotFoundError(f"{parent}: no such directory (for {target})")
    start = time.perf_counter()
    data = _resolve_data(args)
    print(
        f"data: {data.name}: {len(data.train_labels):,} training images "
        f"({100 * config.val_fraction:g}% held out for validation), "
        f"{len(data.test_labels):,} test images",
        flush=True,
    )
    _check_image_size(data.train_images, "training data")
    _check_image_size(data.test_images, "test data")
    with _threads(args.threads):
        result = train(data, config, progress=not args.no_progress)
        x_test = normalise(data.test_images)
        loss, acc, pred = evaluate(result.model, x_test, data.test_labels)
    wall = time.perf_counter() - start
    best = result.best_epoch
    print(
        f"best epoch {best} (validation accuracy {100 * result.history['val_acc'][best - 1]:.2f}%)"
    )
    correct = int((pred == data.test_labels).sum())
    print(
        f"test accuracy {100 * acc:.2f}% ({correct:,}/{len(pred):,}), loss {loss:.4f}, "
        f"wall time {wall:.1f} s"
    )
    print("confusion matrix (rows: true class, columns: predicted):")
    print(_confusion_text(confusion_matrix(data.test_labels, pred, len(data.classes))))
    training = {**result.settings(), "data": data.name, "test_accuracy": acc}
    training["history"] = result.history
    save_checkpoint(args.out, result.model, classes=data.classes, training=training)
    print(f"saved {args.out}")
    if args.plot:
        title = f"LeNet-5 on {data.name.split(' (')[0]}: test accuracy {100 * acc:.2f}%"
        save_curves(result.history, args.plot, best, title)
        print(f"saved {args.plot}")
    return 0


def _evaluate(args) -> int:
    from .checkpoint import load_checkpoint
    from .data import load_mnist, normalise
    from .train import confusion_matrix, evaluate

    model, meta = load_checkpoint(args.model)
    data = load_mnist(args.data)
    _check_image_size(data.test_images, args.data)
    loss, acc, pred = evaluate(model, normalise(data.test_images), data.test_labels)
    matrix = confusion_matrix(data.test_labels, pred, len(meta["classes"]))
    if args.json:
        report = {
            "model": str(args.model),
            "data": str(args.data),
            "images": len(pred),
            "accuracy": acc,
            "loss": loss,
            "confusion": matrix.tolist(),
        }
        print(json.dumps(report))
    else:
        correct = int((pred == data.test_labels).sum())
        print(f"test accuracy {100 * acc:.2f}% ({correct:,}/{len(pred):,}), loss {loss:.4f}")
        print(_confusion_text(matrix))
    return 0


def _predict(args) -> int:
    from .checkpoint import load_checkpoint
    from .data import normalise
    from .preprocess import load_digit_image
    from .train import predict

    model, meta = load_checkpoint(args.model)
    digits = np.stack([load_digit_image(p) for p in args.images])
    probs = predict(model, normalise(digits))
    classes = meta["classes"]
    results = []
    for path, p in zip(args.images, probs, strict=True):
        k = int(p.argmax())
        results.append(
            {
                "image": path,
                "label": k,
                "class": classes[k],
                "probability": float(p[k]),
                "probabilities": [round(float(v), 6) for v in p],
            }
        )
    if args.json:
        print(json.dumps(results))
    else:
        for r in results:
            print(f"{r['image']}: {r['class']} (probability {r['probability']:.3f})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 1 for bad input, 2 for a bad command line.
    """
    args = _build_parser().parse_args(argv)
    command = {"train": _train, "evaluate": _evaluate, "predict": _predict}[args.command]
    try:
        return command(args)
    except KeyboardInterrupt:
        print("convnet: interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError, TypeError, KeyError, FloatingPointError) as exc:
        message = str(exc) or type(exc).__name__
        if isinstance(exc, FileNotFoundError) and exc.filename and not exc.args[1:]:
            message = f"{exc.filename}: no such file"
        print(f"convnet: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
