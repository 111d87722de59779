"""Frequency-domain steerable pyramids: this package against pyrtools and plenoptic.

Each peer builds its masks once per shape where it can (ours: a
:class:`pyramids.FrequencySteerableModel`; plenoptic: its ``SteerablePyramidFreq`` module;
pyrtools rebuilds them on every call, it has no other way). Times are medians of interleaved
repeats (:func:`harness.interleaved_medians`) of one build and one reconstruction of a
float32 image in [0, 1], with the same thread count for everyone (``--threads``: our FFT
workers, ``torch.set_num_threads``). Ratios are peer / ours (above 1: we are faster). The
maximum reconstruction error is printed beside each time.

Cases (the issue's): real, 4 orientations, 5 levels at 512² and 2048²; complex,
4 orientations, all levels, 480×640. Beside ours, a row "FFTs only" times nothing but the
transforms our build computes (a floor for it, docs/design.md §6). ``frames``: a stack of
complex frames decomposed and reconstructed in one call
(:meth:`~pyramids.FrequencySteerableModel.analyse_frames`) against a loop over the frames,
per frame, and plenoptic's batch where it is importable: 64 frames of 128×128 and 16 of
480×640.

    pip install pyrtools                       # optional peer (the test extra has it)
    pip install plenoptic==2.1.1               # optional peer, needs torch; never a dependency
    python benchmarks/bench_steerable_freq.py --threads 2
    python benchmarks/bench_steerable_freq.py --cases 512 --repeats 9
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
from harness import interleaved_medians, print_machine

from pyramids.steerable_freq import FrequencySteerableModel

CASES = {  # name → (shape, levels or None for all, complex)
    "512": ((512, 512), 5, False),
    "2048": ((2048, 2048), 5, False),
    "480x640-complex": ((480, 640), None, True),
}


def sample_image(shape: tuple[int, int]) -> np.ndarray:
    """A smooth random image in [0, 1] (deterministic), float32."""
    rng = np.random.default_rng(0)
    noise = rng.random((shape[0] // 8 + 2, shape[1] // 8 + 2))
    image = np.kron(noise, np.ones((8, 8)))[: shape[0], : shape[1]]
    image = 0.5 * image + 0.5 * rng.random(shape)
    return image.astype(np.float32)


Method = tuple[Callable[[], object], Callable[[], np.ndarray]]


def ours(x: np.ndarray, levels: int | None, complex_: bool, threads: int) -> Method:
    model = FrequencySteerableModel(x.shape, levels, 4, complex=complex_)
    pyramid = model.decompose(x, threads=threads)
    return (
        lambda: model.decompose(x, threads=threads),
        lambda: pyramid.reconstruct(threads=threads),
    )


def transforms_only(x: np.ndarray, levels: int | None, complex_: bool, threads: int) -> Method:
    """Only the FFTs that our build computes, on spectra of the same shapes and dtypes.

    A floor for the build: the image's real FFT, the high-pass residual's inverse, each
    level's inverse transforms (complex bands: one complex transform per band) and the
    low-pass residual's. No masks, crops or copies. Its reconstruction is neither timed nor
    checked.
    """
    import scipy.fft

    model = FrequencySteerableModel(x.shape, levels, 4, complex=complex_)
    shapes = model.level_shapes
    half = scipy.fft.rfft2(x, norm="ortho")
    kind = np.complex64 if x.dtype == np.float32 else np.complex128
    spectra = [np.ones((4, h, w if complex_ else w // 2 + 1), kind) for h, w in shapes[:-1]]
    h, w = shapes[-1]
    low = np.ones((h, w if complex_ else w // 2 + 1), kind)
    fft = {"axes": (-2, -1), "norm": "ortho", "workers": threads}

    def build():
        scipy.fft.rfft2(x, **fft)
        scipy.fft.irfft2(half, s=x.shape, **fft)
        for (h, w), stack in zip(shapes, spectra):
            if complex_:
                scipy.fft.ifft2(stack, **fft)
            else:
                scipy.fft.irfft2(stack, s=(h, w), **fft)
        if complex_:
            scipy.fft.ifft2(low, **fft)
        else:
            scipy.fft.irfft2(low, s=shapes[-1], **fft)

    return build, lambda: x


def pyrtools_method(x: np.ndarray, levels: int | None, complex_: bool) -> Method | None:
    try:
        import pyrtools as pt
    except ImportError:
        return None
    height = "auto" if levels is None else levels

    def build():
        return pt.pyramids.SteerablePyramidFreq(x, height=height, order=3, is_complex=complex_)

    pyramid = build()
    return build, lambda: pyramid.recon_pyr()


def plenoptic_method(
    x: np.ndarray, levels: int | None, complex_: bool, threads: int
) -> Method | None:
    try:
        import torch
        from plenoptic.process import SteerablePyramidFreq
    except ImportError:
        return None
    torch.set_num_threads(threads)
    height = "auto" if levels is None else levels
    model = SteerablePyramidFreq(x.shape, height=height, order=3, is_complex=complex_)
    tensor = torch.from_numpy(x)[None, None]
    with torch.no_grad():
        coefficients = model(tensor)

    def build():
        with torch.no_grad():
            return model(tensor)

    def reconstruct():
        with torch.no_grad():
            return model.recon_pyr(coefficients)[0, 0].numpy()

    return build, reconstruct


FLOOR = "ours, FFTs only (floor)"
FRAME_STACKS = (((128, 128), 64), ((480, 640), 16))  # (shape, frames)


def run_frames(threads: int, repeats: int) -> None:
    """Per-frame cost of stacks of frames: one batched call against a loop over frames."""
    for shape, count in FRAME_STACKS:
        run_frame_stack(shape, count, threads, repeats)


def run_frame_stack(shape: tuple[int, int], count: int, threads: int, repeats: int) -> None:
    frames = np.stack([np.roll(sample_image(shape), t, axis=1) for t in range(count)])
    model = FrequencySteerableModel(shape, None, 4, complex=True)
    coefficients = model.analyse_frames(frames, threads=threads)
    singles = [model.analyse(frame, threads=threads) for frame in frames]
    table = {
        "ours, batch": (
            lambda: model.analyse_frames(frames, threads=threads),
            lambda: model.synthesise_frames(*coefficients, threads=threads),
        ),
        "ours, loop": (
            lambda: [model.analyse(frame, threads=threads) for frame in frames],
            lambda: [model.synthesise(*c, threads=threads) for c in singles],
        ),
    }
    try:
        import torch
        from plenoptic.process import SteerablePyramidFreq
    except ImportError:
        print("(plenoptic not importable: skipped)")
    else:
        torch.set_num_threads(threads)
        peer = SteerablePyramidFreq(shape, height="auto", order=3, is_complex=True)
        tensor = torch.from_numpy(frames)[:, None]
        with torch.no_grad():
            peer_coefficients = peer(tensor)

        def peer_build():
            with torch.no_grad():
                return peer(tensor)

        def peer_reconstruct():
            with torch.no_grad():
                return peer.recon_pyr(peer_coefficients)

        table["plenoptic, batch"] = (peer_build, peer_reconstruct)
    builds = interleaved_medians({k: v[0] for k, v in table.items()}, repeats)
    recons = interleaved_medians({k: v[1] for k, v in table.items()}, repeats)
    print(
        f"\n### {count} frames {shape[0]}×{shape[1]} float32, complex, 4 orientations, all levels"
    )
    print(f"{threads} threads, median of {repeats}, per frame; ratio: method / ours, batch\n")
    print("| method | build (ms/frame) | ratio | reconstruct (ms/frame) | ratio |")
    print("| --- | ---: | ---: | ---: | ---: |")
    base_b, base_r = builds["ours, batch"], recons["ours, batch"]
    for label in table:
        b, r = builds[label], recons[label]
        print(
            f"| {label} | {1e3 * b / count:.2f} | {b / base_b:.2f} | "
            f"{1e3 * r / count:.2f} | {r / base_r:.2f} |"
        )


def run(name: str, threads: int, repeats: int) -> None:
    shape, levels, complex_ = CASES[name]
    x = sample_image(shape)
    table: dict[str, Method] = {
        "ours": ours(x, levels, complex_, threads),
        FLOOR: transforms_only(x, levels, complex_, threads),
    }
    for label, method in (
        ("pyrtools", pyrtools_method(x, levels, complex_)),
        ("plenoptic", plenoptic_method(x, levels, complex_, threads)),
    ):
        if method is None:
            print(f"({label} not importable: skipped)")
        else:
            table[label] = method
    builds = interleaved_medians({k: v[0] for k, v in table.items()}, repeats)
    recons = interleaved_medians({k: v[1] for k, v in table.items() if k != FLOOR}, repeats)
    what = "complex" if complex_ else "real"
    print(f"\n### {shape[0]}×{shape[1]} float32, {what}, 4 orientations, levels {levels or 'all'}")
    print(f"{threads} threads, median of {repeats}\n")
    print("| method | build (ms) | ratio | reconstruct (ms) | ratio | max error |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for label, (_, reconstruct) in table.items():
        b = builds[label]
        if label == FLOOR:  # no reconstruction to time or check
            print(f"| {label} | {1e3 * b:.1f} | {b / builds['ours']:.2f} | – | – | – |")
            continue
        r = recons[label]
        error = float(np.abs(np.asarray(reconstruct(), dtype=np.float64) - x).max())
        # A tight frame inverts to float32 rounding (about 1e-6 here); far above it, the
        # peer's reconstruction is not the image, and its time is not of a correct result.
        flag = " (wrong result)" if error > 1e-3 else ""
        print(
            f"| {label} | {1e3 * b:.1f} | {b / builds['ours']:.2f} | {1e3 * r:.1f} | "
            f"{r / recons['ours']:.2f} | {error:.1e}{flag} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cases", nargs="+", choices=[*sorted(CASES), "frames"], default=[*CASES, "frames"]
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print_machine()
    for name in args.cases:
        if name == "frames":
            run_frames(args.threads, args.repeats)
        else:
            run(name, args.threads, args.repeats)


if __name__ == "__main__":
    main()
