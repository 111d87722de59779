"""Throughput of LeNet-5: this package's numpy layers beside the same network in PyTorch.

Times a training step (forward, backward and an SGD-with-momentum update; ours as
``convnet train`` runs it, ``Sequential.train_step``) at batch sizes 64 and 256, and
inference at batch 256, in float32, as the median of several repeats of several steps
each. When ``torch`` is importable (``pip install torch==2.13.0``), the same
LeNet-5 runs in PyTorch on the CPU with the same number of threads, its repeats interleaved
with ours, and the ratio is printed. A parity check first loads identical weights into
both and compares logits and gradients. Our network runs batches larger than
``Sequential.chunk_size`` in chunks on ``--threads`` threads (``lenet5(threads=...)``).

    python benchmarks/bench_convnet.py [--threads N] [--repeats R] [--steps S] [--proxy]

``--proxy`` adds a steadier figure for a shared, loaded machine: both sides on one thread,
each timed by the CPU time of the process (``time.process_time``) over one step, the
minimum of ``10·R`` interleaved repeats. Another process on the same cores slows both
sides' wall clock by amounts that vary from repeat to repeat; the minimum CPU time is
the repeat that ran least disturbed. It is a proxy: the issue's figure is the wall clock
on ``--threads 2`` of a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from harness import interleaved_medians, print_machine


def _limit_threads(n: int):
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n, user_api="blas")


def ours(batch: int, train: bool, threads: int):
    """One training step (or one forward pass) of our LeNet-5 on a fixed random batch."""
    from convnet import SGD, cross_entropy, lenet5

    rng = np.random.default_rng(0)
    net = lenet5(seed=0, threads=threads)
    opt = SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, batch)

    def loss(logits, rows):
        return cross_entropy(logits, y[rows], count=batch)

    def train_step():  # as convnet.train does it: each chunk's passes in one go
        net.train_step(x, loss)
        opt.step(net.grads())

    if not train:
        net.eval()
    return train_step if train else lambda: net.forward(x)


def _torch_lenet():
    import torch
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    ).to(torch.float32)  # fmt: skip


def theirs(batch: int, train: bool):
    """The same step in PyTorch, with the same loss and optimizer."""
    import torch

    torch.manual_seed(0)
    net = _torch_lenet()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 1, 28, 28)
    y = torch.randint(0, 10, (batch,))
    loss_fn = torch.nn.CrossEntropyLoss()

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss_fn(net(x), y).backward()
        opt.step()

    def infer():
        with torch.inference_mode():
            net(x)

    net.train(train)
    return train_step if train else infer


def parity() -> tuple[float, float]:
    """Max relative difference of logits and of parameter gradients, float64, same weights."""
    import torch

    from convnet import cross_entropy, lenet5

    ours_net = lenet5(np.float64, seed=1)
    net = _torch_lenet().to(torch.float64)
    names = ["conv1", "conv2", "fc1", "fc2", "fc3"]
    modules = [m for m in net if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    state = ours_net.state_dict()
    with torch.no_grad():
        for name, module in zip(names, modules, strict=True):
            module.weight.copy_(torch.from_numpy(state[f"{name}.weight"]))
            module.bias.copy_(torch.from_numpy(state[f"{name}.bias"]))
    rng = np.random.default_rng(2)
    # Quantised inputs, as MNIST's are, so that max-pool ties really occur; more images
    # than one chunk (Sequential.chunk_size), so that the chunked path is compared too.
    n = ours_net.chunk_size + 8
    x = np.round(rng.random((n, 1, 28, 28)) * 4) / 4
    x[:, :, :6] = 0
    y = rng.integers(0, 10, n)
    logits = ours_net.forward(x)
    _, d = cross_entropy(logits, y)
    ours_net.backward(d)
    t_logits = net(torch.from_numpy(x))
    torch.nn.functional.cross_entropy(t_logits, torch.from_numpy(y)).backward()
    logit_err = np.abs(logits - t_logits.detach().numpy()).max() / np.abs(logits).max()
    grads = ours_net.grads()
    grad_err = max(
        np.abs(grads[f"{n}.{p}"] - getattr(m, p).grad.numpy()).max()
        / np.abs(grads[f"{n}.{p}"]).max()
        for n, m in zip(names, modules, strict=True)
        for p in ("weight", "bias")
    )
    return float(logit_err), float(grad_err)


def cpu_minima(functions: dict, repeats: int, warmup: int = 3) -> dict[str, float]:
    """Minimum CPU seconds of one call of each function, over ``repeats`` interleaved
    rounds (see the module docstring, ``--proxy``)."""
    for fn in functions.values():
        for _ in range(warmup):
            fn()
    best = dict.fromkeys(functions, float("inf"))
    for _ in range(repeats):
        for name, fn in functions.items():
            start = time.process_time()
            fn()
            best[name] = min(best[name], time.process_time() - start)
    return best


def proxy_table(repeats: int) -> None:
    """The ``--proxy`` table: one thread each side, minimum CPU time per step."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    print(
        f"\nproxy: 1 thread each, minimum CPU time of one step over {repeats} interleaved repeats"
    )
    print(f"{'workload':<22}{'convnet ms':>12}{'PyTorch ms':>12}{'ratio':>8}")
    try:
        with _limit_threads(1):
            for label, batch, train in WORKLOADS:
                steps = {"ours": ours(batch, train, 1), "torch": theirs(batch, train)}
                best = cpu_minima(steps, repeats)
                print(f"{label:<22}{best['ours'] * 1e3:>12.2f}{best['torch'] * 1e3:>12.2f}"
                      f"{best['torch'] / best['ours']:>8.2f}", flush=True)  # fmt: skip
    finally:
        torch.set_num_threads(threads)


WORKLOADS = (
    ("train, batch 64", 64, True),
    ("train, batch 256", 256, True),
    ("inference, batch 256", 256, False),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument(
        "--proxy", action="store_true", help="add the one-thread CPU-time table (docstring)"
    )
    args = parser.parse_args()
    try:
        import torch

        torch.set_num_threads(args.threads)
        have_torch = True
    except ImportError:
        have_torch = False
    print_machine()
    print(f"LeNet-5, float32, {args.threads} thread(s), median of {args.repeats} interleaved x "
          f"{args.steps} steps")  # fmt: skip
    if have_torch:
        logit_err, grad_err = parity()
        print(f"parity with PyTorch {torch.__version__} (float64, same weights): logits "
              f"{logit_err:.1e}, gradients {grad_err:.1e} (max relative difference)")  # fmt: skip
    else:
        print("torch not importable: numpy figures only (pip install torch==2.13.0)")
    header = f"{'workload':<22}{'convnet img/s':>15}"
    if have_torch:
        header += f"{'PyTorch img/s':>15}{'ratio':>8}"
    print(header)
    with _limit_threads(args.threads):
        for label, batch, train in WORKLOADS:
            steps = {"ours": ours(batch, train, args.threads)}
            if have_torch:
                steps["torch"] = theirs(batch, train)
            seconds = interleaved_medians(steps, args.repeats, warmup=3, inner=args.steps)
            mine = batch / seconds["ours"]
            line = f"{label:<22}{mine:>15,.0f}"
            if have_torch:
                ref = batch / seconds["torch"]
                line += f"{ref:>15,.0f}{mine / ref:>8.2f}"
            print(line, flush=True)
    if args.proxy and have_torch:
        proxy_table(10 * args.repeats)


if __name__ == "__main__":
    main()
