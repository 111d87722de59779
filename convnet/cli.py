"""The ``convnet`` command: train, evaluate and use a LeNet-5 digit classifier.

    convnet train [--data DIR | --download [--mirror URL]] [--epochs N] [--batch-size N]
                  [--lr X] [--optimizer sgd|adam] [--seed N] [--out model.npz]
                  [--plot curves.png] [--force] [--resume STATE] [--weight-decay X]
                  [--ema EPOCHS] [--label-smoothing X] [--rotation DEG] [--scale X]
                  [--shift PX] [--shear X] [--squeeze X] [--hflip]
    convnet evaluate MODEL --data DIR [--json]
    convnet predict MODEL IMAGE... [--json] [--max-pixels N]
    convnet inspect MODEL [IMAGE...] -o DIR [--data DIR] [--top N] [--force]
    convnet serve MODEL [--port 8000] [--host 127.0.0.1]

Exit status (the same convention as the ``pyramids`` command): 0 on success; 2 for a wrong
command line and for bad input (missing, corrupt or invalid files or values: images of the
wrong size, NaN, a checkpoint of another architecture, an output that would replace an
input), with one line on stderr; 1 for a runtime failure (an output that cannot be
written, a download that fails from every mirror, a training run that diverges, memory
exhausted); 130 when interrupted (Ctrl-C) and 143 when terminated (SIGTERM), after
removing temporary files.
Every output of ``train`` is checked before training starts.
``serve`` runs until interrupted: Ctrl-C stops it with status 0.
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

from pyramids.command import run_command

__all__ = ["EMBEDDED_EPOCHS", "main"]

#: Default epochs on the embedded 8×8 digits (1,437 training images, upsampled): their test
#: accuracy stops improving long before the 60 epochs per member that suit MNIST-style data.
EMBEDDED_EPOCHS = 30


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


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (np.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a number ≥ 0, got {text}")
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
    from .preprocess import DEFAULT_MAX_PIXELS
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
    t.add_argument(
        "--mirror",
        metavar="URL",
        action="append",
        default=[],
        help="base URL of one's own MNIST mirror (http, https or file), tried before the "
        "public ones; repeatable; implies --download (default: $CONVNET_MNIST_MIRROR)",
    )
    t.add_argument(
        "--epochs",
        type=_positive_int,
        help=f"training epochs (default {d.epochs} for MNIST-style data, {EMBEDDED_EPOCHS} "
        "for the small embedded digits used when there is no MNIST)",
    )
    t.add_argument("--batch-size", type=_positive_int, default=d.batch_size)
    t.add_argument("--lr", type=_positive_float, default=d.lr, help="peak learning rate")
    t.add_argument("--optimizer", choices=("sgd", "adam"), default=d.optimizer)
    t.add_argument("--seed", type=int, default=d.seed)
    t.add_argument(
        "--variant",
        choices=("relu", "classic"),
        default=d.variant,
        help="LeNet-5 with ReLU and max pooling (default), or the classic one of LeCun et al. "
        "1998: scaled tanh, trainable subsampling, 32×32 input",
    )
    t.add_argument(
        "--members",
        type=_positive_int,
        default=d.members,
        metavar="N",
        help="networks trained one after another (each with its own seed and validation "
        "split, for --epochs each) whose probabilities are averaged; 1 trains one network "
        f"(default {d.members})",
    )
    t.add_argument("--val-fraction", type=_fraction, default=d.val_fraction)
    t.add_argument("--no-augment", action="store_true", help="no random affine distortions")
    t.add_argument("--weight-decay", type=_non_negative_float, default=d.weight_decay)
    t.add_argument(
        "--ema",
        type=_non_negative_float,
        default=d.ema,
        metavar="EPOCHS",
        help="time constant in epochs of the moving average of the weights that is validated "
        f"and saved instead of the raw weights; 0 turns it off (default {d.ema:g})",
    )
    t.add_argument(
        "--label-smoothing",
        type=_fraction,
        default=d.label_smoothing,
        metavar="X",
        help=f"ε of the smoothed training targets (default {d.label_smoothing:g})",
    )
    distortions = t.add_argument_group(
        "augmentation", "ranges of the random distortions of the training pictures"
    )
    for flag, help_text in (
        ("rotation", "± degrees"),
        ("scale", "1 ± this zoom"),
        ("shift", "± pixels along each axis"),
        ("shear", "± slant"),
        ("squeeze", "1 ± this width against height"),
    ):
        kind = _fraction if flag in ("scale", "squeeze") else _non_negative_float
        default = getattr(d, flag)
        distortions.add_argument(
            f"--{flag}", type=kind, default=default, help=f"{help_text} (default {default:g})"
        )
    distortions.add_argument(
        "--hflip",
        action="store_true",
        help="mirror half the pictures left to right (for clothes, never for digits)",
    )
    t.add_argument("--out", default="model.npz", help="checkpoint file (default model.npz)")
    t.add_argument("--plot", metavar="PNG", help="write learning curves to this PNG")
    t.add_argument(
        "--force",
        action="store_true",
        help="replace an existing --out or --plot file (even one that is an input), or start "
        "afresh over the training state an interrupted run left",
    )
    t.add_argument(
        "--resume",
        metavar="STATE",
        help="continue an interrupted run from its training-state file (written after every "
        "epoch beside --out, model.npz → model.state.npz, and removed once --out is saved); "
        "the run ends as the uninterrupted one would",
    )
    t.add_argument(
        "--threads",
        type=_positive_int,
        help="threads the training runs on (default: $PYRAMIDS_NUM_THREADS, else the cores "
        "available, at most 4); the trained weights are the same for any count",
    )
    t.add_argument("--no-progress", action="store_true", help="no progress bars")

    e = sub.add_parser("evaluate", help="test accuracy of a checkpoint on a data directory")
    e.add_argument("model")
    e.add_argument("--data", metavar="DIR", required=True)
    e.add_argument("--json", action="store_true", help="print one JSON document")

    p = sub.add_parser("predict", help="classify image files of digits")
    p.add_argument("model")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument(
        "--max-pixels",
        type=_positive_int,
        default=DEFAULT_MAX_PIXELS,
        help="refuse, before decoding, images with more pixels than this "
        f"(default {DEFAULT_MAX_PIXELS:,})",
    )

    i = sub.add_parser(
        "inspect", help="pictures of the filters, feature maps, saliency and mistakes"
    )
    i.add_argument("model")
    i.add_argument("images", nargs="*", metavar="IMAGE", help="digit pictures, as for predict")
    i.add_argument("-o", "--out", metavar="DIR", required=True, help="directory of the PNGs")
    i.add_argument("--data", metavar="DIR", help="MNIST-style directory: most-wrong digits and "
                   "the confusion matrix of its test set")  # fmt: skip
    i.add_argument("--top", type=_positive_int, default=24, help="most-wrong digits shown")
    i.add_argument("--force", action="store_true", help="replace existing PNGs in DIR")
    i.add_argument("--max-pixels", type=_positive_int, default=DEFAULT_MAX_PIXELS)

    s = sub.add_parser("serve", help="a local web page to draw a digit and watch it read")
    s.add_argument("model")
    s.add_argument("--port", type=_port, default=8000, help="0 picks a free one (default 8000)")
    s.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 lets "
        "every machine that can reach this one use the page)",
    )
    return parser


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be in 0 … 65535, got {value}")
    return value


# --------------------------------------------------------------------------- helpers


def _data_directory(args) -> Path | None:
    """The directory the training data will come from (None: the embedded digits)."""
    from .data import FILES, default_cache_dir

    if args.download or args.data:
        return Path(args.data).expanduser() if args.data else default_cache_dir()
    cache = default_cache_dir()
    return cache if all((cache / f).is_file() for f in FILES) else None


def _resolve_data(args, directory: Path | None):
    from .data import embedded_digits, load_mnist
    from .download import download_mnist, mirrors_from

    if args.download:
        mirrors = mirrors_from(args.mirror)
        download_mnist(directory, mirrors=mirrors, log=lambda line: print(line, file=sys.stderr))
        return load_mnist(directory, name=f"MNIST from {directory}")
    if args.data:
        return load_mnist(directory)
    if directory is not None:
        return load_mnist(directory, name=f"MNIST from the cache {directory}")
    data = embedded_digits()
    data.name += " (no MNIST in the cache; pass --data DIR or --download for MNIST)"
    return data


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    with contextlib.suppress(OSError):
        return a.exists() and b.exists() and os.path.samefile(a, b)
    return False


def _state_path(args) -> Path:
    """The training-state file: ``--resume``'s, else ``--out`` with ``.state.npz`` for its
    suffix (``model.npz`` → ``model.state.npz``), rewritten after every epoch."""
    if args.resume:
        return Path(args.resume)
    out = Path(args.out)
    return out.with_name(out.name.removesuffix(out.suffix) + ".state.npz")


def _check_outputs(args, inputs: list[Path]) -> None:
    """Refuse, before any work, outputs that could not be written or would destroy something.

    Raises ValueError (an input error) for an output that is a directory, sits in a missing
    directory, names the same file as another output or as the training state, or replaces
    an existing file, an input or the training state of an interrupted run without
    ``--force``; PermissionError (a runtime failure) for a directory that cannot be written.
    """
    outputs = [("--out", Path(args.out))]
    if args.plot:
        outputs.append(("--plot", Path(args.plot)))
    if len(outputs) == 2 and _same_file(outputs[0][1], outputs[1][1]):
        raise ValueError(f"--out and --plot name the same file ({args.out}); give two names")
    for flag, path in outputs:
        if path.is_dir():
            raise ValueError(f"{flag} {path}: is a directory; name a file")
        parent = path.parent
        if not parent.is_dir():
            raise ValueError(f"{flag} {path}: no such directory {parent}")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise PermissionError(f"{flag} {path}: cannot write into {parent} (permission denied)")
        if flag == "--plot":
            from matplotlib.backend_bases import FigureCanvasBase

            if path.suffix.lower().lstrip(".") not in FigureCanvasBase.get_supported_filetypes():
                raise ValueError(f"--plot {path}: unknown picture format (use .png, .pdf, .svg)")
        if args.force:
            continue
        if any(_same_file(path, source) for source in inputs if source.exists()):
            raise ValueError(
                f"{flag} {path}: is an input of this run; refusing to overwrite it "
                "(name another file, or pass --force)"
            )
        if path.exists():
            raise ValueError(f"{flag} {path}: exists; pass --force to replace it")
    state = _state_path(args)
    for flag, path in outputs:
        if _same_file(path, state):  # even with --force: the state is removed at the end
            raise ValueError(
                f"{flag} {path}: is this run's training state, rewritten after every epoch "
                "and removed once --out is saved; name another file"
            )
    if not args.resume and state.exists() and not args.force:
        raise ValueError(
            f"{state}: the training state of an interrupted run; continue it with "
            f"--resume {state}, or pass --force to start afresh"
        )


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


# --------------------------------------------------------------------------- commands


def _train(args) -> int:
    from .checkpoint import save_checkpoint
    from .data import FILES, normalise
    from .download import mirrors_from
    from .train import TrainConfig, confusion_matrix, evaluate, save_curves, train

    if args.mirror:
        args.download = True
    if args.download:
        mirrors_from(args.mirror)  # a malformed URL is refused before anything else
    directory = _data_directory(args)
    inputs = []
    if directory is not None:
        inputs = [directory / n for f in FILES for n in (f, f.removesuffix(".gz"))]
    state = _state_path(args)
    extra = {"state_path": state}
    if args.resume:
        if not state.is_file():
            raise FileNotFoundError(f"{state}: no such training-state file (--resume)")
        extra["resume"] = state
        inputs.append(state)
    _check_outputs(args, inputs)
    args.state_hint = state
    start = time.perf_counter()
    data = _resolve_data(args, directory)
    epochs = args.epochs or (EMBEDDED_EPOCHS if directory is None else TrainConfig().epochs)
    config = TrainConfig(
        epochs=epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        seed=args.seed,
        variant=args.variant,
        val_fraction=args.val_fraction,
        augment=not args.no_augment,
        weight_decay=args.weight_decay,
        ema=args.ema,
        label_smoothing=args.label_smoothing,
        rotation=args.rotation,
        scale=args.scale,
        shift=args.shift,
        shear=args.shear,
        squeeze=args.squeeze,
        hflip=args.hflip,
        members=args.members,
    )
    config.validate()  # --members beyond the limit: one line before the data is read
    print(
        f"data: {data.name}: {len(data.train_labels):,} training images "
        f"({100 * config.val_fraction:g}% held out for validation), "
        f"{len(data.test_labels):,} test images; {epochs} epochs"
        + (f" for each of {config.members} networks" if config.members > 1 else ""),
        flush=True,
    )
    _check_image_size(data.train_images, "training data")
    _check_image_size(data.test_images, "test data")
    result = train(data, config, progress=not args.no_progress, threads=args.threads, **extra)
    x_test = normalise(data.test_images)
    loss, acc, pred = evaluate(result.model, x_test, data.test_labels, threads=args.threads)
    wall = time.perf_counter() - start
    for k, own in enumerate(result.members or [result]):
        best, who = own.best_epoch, f"member {k + 1}: " if result.members else ""
        print(
            f"{who}best epoch {best} (validation accuracy "
            f"{100 * own.history['val_acc'][best - 1]:.2f}%)"
        )
    correct = int((pred == data.test_labels).sum())
    print(
        f"test accuracy {100 * acc:.2f}% ({correct:,}/{len(pred):,}), loss {loss:.4f}, "
        f"wall time {wall:.1f} s"
    )
    print("confusion matrix (rows: true class, columns: predicted):")
    print(_confusion_text(confusion_matrix(data.test_labels, pred, len(data.classes))))
    training = {**result.settings(), "data": data.name, "test_accuracy": acc}
    if result.members:
        training["histories"] = [own.history for own in result.members]
    else:
        training["history"] = result.history
    save_checkpoint(args.out, result.model, classes=data.classes, training=training)
    print(f"saved {args.out}")
    state.unlink(missing_ok=True)  # the run is safely saved: nothing left to resume
    if args.plot:
        title = f"LeNet-5 on {data.name.split(' (')[0]}: test accuracy {100 * acc:.2f}%"
        shown = result.members[0] if result.members else result
        if result.members:
            title += f" (committee of {len(result.members)}; curves of member 1)"
        save_curves(shown.history, args.plot, shown.best_epoch, title, augmented=config.augment)
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
    if args.json:  # confusion[true][predicted], as the text's rows and columns
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
    digits = np.stack([load_digit_image(p, max_pixels=args.max_pixels) for p in args.images])
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


def _inspect_names(args) -> list[str]:
    """The PNG files ``inspect`` writes into its directory, in order."""
    names = ["conv1-filters.png", "conv2-filters.png"]
    stems = [Path(p).stem for p in args.images]
    for k, stem in enumerate(stems):
        tag = stem if stems.count(stem) == 1 else f"{k + 1}-{stem}"
        names += [f"{tag}-features.png", f"{tag}-saliency.png"]
    if args.data:
        names += ["most-wrong.png", "confusion.png"]
    return names


def _inspect(args) -> int:
    from pyramids.io import atomic_path

    from . import inspect
    from .checkpoint import load_checkpoint
    from .committee import Committee
    from .data import load_mnist, normalise
    from .preprocess import load_digit_image
    from .train import confusion_matrix, evaluate, predict

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"-o {out}: exists and is not a directory")
    if not out.parent.is_dir():
        raise ValueError(f"-o {out}: no such directory {out.parent}")
    names = _inspect_names(args)
    existing = [n for n in names if (out / n).exists()]
    if existing and not args.force:
        raise ValueError(f"{out / existing[0]}: exists; pass --force to replace it")
    model, meta = load_checkpoint(args.model)
    classes = meta["classes"]
    if args.data:  # read before any picture is made: a bad directory fails fast
        data = load_mnist(args.data)
        _check_image_size(data.test_images, args.data)
    # Every picture is made before the first file is written, each file atomically.
    pngs = [inspect.figure_png(inspect.filters_figure(model, c)) for c in ("conv1", "conv2")]
    for path in args.images:
        digit = load_digit_image(path, max_pixels=args.max_pixels)
        x = normalise(digit[None])[0]
        maps = inspect.feature_maps(model, x)
        probs = predict(model, x[None])[0]
        k = int(probs.argmax())
        title = f"{path}: {classes[k]} (probability {float(probs[k]):.3f})"
        whose = title
        if isinstance(model, Committee):
            title += f", committee of {len(model)}"
            whose += f"; maps of member 1 of {len(model)}"
        pngs.append(inspect.figure_png(inspect.feature_maps_figure(maps, digit, whose)))
        grad = inspect.saliency(model, x)
        pngs.append(inspect.figure_png(inspect.saliency_figure(digit, grad, title)))
    if args.data:
        x_test = normalise(data.test_images)
        _, acc, pred = evaluate(model, x_test, data.test_labels)
        wrong = inspect.most_wrong(model, x_test, data.test_labels, args.top)
        pngs.append(
            inspect.figure_png(inspect.most_wrong_figure(data.test_images, wrong, classes))
        )
        matrix = confusion_matrix(data.test_labels, pred, len(classes))
        title = f"{len(pred):,} test digits, accuracy {100 * acc:.2f}%"
        if isinstance(model, Committee):
            title += f" (committee of {len(model)})"
        pngs.append(inspect.figure_png(inspect.confusion_figure(matrix, classes, title)))
    out.mkdir(exist_ok=True)
    for name, png in zip(names, pngs, strict=True):
        with atomic_path(out / name) as tmp:
            tmp.write_bytes(png)
        print(f"saved {out / name}")
    return 0


def _serve(args) -> int:
    import errno

    from pyramids.command import one_line

    from .checkpoint import load_checkpoint
    from .serve import make_server

    model, meta = load_checkpoint(args.model)
    try:
        server = make_server(model, args.host, args.port, classes=meta["classes"])
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ValueError(
                f"port {args.port} on {args.host} is in use; choose another with --port "
                "(--port 0 picks a free one)"
            ) from None
        where = f"{args.host} port {args.port}"
        raise ValueError(f"cannot listen on {where}: {one_line(exc)}") from None
    with server:
        print(f"serving {args.model} on {server.url} (Ctrl-C to stop)", flush=True)
        if not server.loopback_only:
            where = server.server_address[0]
            print(f"{where} is not the loopback: other machines can use the page", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:  # the way to stop a server: not a failure
            print("stopped", flush=True)
    return 0


def _resume_hint(args) -> str:
    state = getattr(args, "state_hint", None)
    if state is None or not state.is_file():
        return ""
    return f"; continue with: convnet train … --resume {state} (the same data and settings)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success; 2 for bad input (a wrong command line exits with 2 through
        ``SystemExit``); 1 for a runtime failure; 130 if interrupted; 143 on SIGTERM
        (:mod:`pyramids.command`, shared with the ``pyramids`` command).
    """
    args = _build_parser().parse_args(argv)
    command = {"train": _train, "evaluate": _evaluate, "predict": _predict, "inspect": _inspect,
               "serve": _serve}[args.command]  # fmt: skip
    return run_command(lambda: command(args), "convnet", hint=lambda: _resume_hint(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
