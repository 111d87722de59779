"""Frequency-domain and complex steerable pyramids (pyramids.steerable_freq, design §6)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.fft
from requires import require_module

import pyramids
from pyramids.cli import main
from pyramids.io import read_image, write_image
from pyramids.pyramid import PyramidFileError, load_pyramid, pyramid_kinds
from pyramids.samples import sample_images
from pyramids.steerable_freq import (
    FrequencySteerableModel,
    FrequencySteerablePyramid,
    frequency_analysis_matrix,
    max_frequency_levels,
    steerable_pyramid_freq,
)

SHAPES = [(32, 32), (33, 27), (17, 64), (40, 31, 3), (8, 9)]
ORIENTATIONS = [1, 2, 4, 6, 16]


def image(shape, dtype=np.float64, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape).astype(dtype)


def tolerance(shape, dtype, levels: int) -> float:
    """Max error allowed for an image in [0, 1], from the unit roundoff and the work done.

    Each unitary FFT of ``N`` points errs by about ``log2 N`` roundings (relative, in norm);
    a pixel of the reconstruction passes four of them (analysis and synthesis, forward and
    inverse) and about two mask products and one addition per level. The constant is
    deliberately small: the observed errors sit about 10 times below it.
    """
    n = shape[0] * shape[1]
    u = np.finfo(dtype).eps / 2
    return float(u * (4 * math.log2(n) + 2 * levels + 8))


def energy(pyramid: FrequencySteerablePyramid) -> float:
    """``‖h‖² + Σ‖b‖² + ‖r‖²``, with ``½`` on complex bands (module docstring)."""
    total = 0.0
    for name, array in pyramid._arrays().items():
        weight = 0.5 if pyramid.complex and name.startswith("band") else 1.0
        total += weight * float(np.sum(np.abs(array.astype(np.complex128)) ** 2))
    return total


# --------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("complex_", "orientations"),
    [(False, k) for k in ORIENTATIONS] + [(True, k) for k in ORIENTATIONS if k > 1],
)
def test_reconstruction_is_exact(shape, dtype, complex_, orientations):
    x = image(shape, dtype)
    pyr = steerable_pyramid_freq(x, orientations=orientations, complex=complex_)
    assert pyr.levels == max_frequency_levels(shape)
    out = pyr.reconstruct()
    assert out.shape == x.shape and out.dtype == dtype
    error = np.abs(out - x).max()
    assert error <= tolerance(shape, dtype, pyr.levels)
    assert error <= (1e-5 if dtype == np.float32 else 1e-12)  # the issue's figures


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("complex_", [False, True])
def test_dtypes_are_kept(dtype, complex_):
    pyr = steerable_pyramid_freq(image((24, 20, 2), dtype), complex=complex_)
    band_dtype = np.result_type(dtype, np.complex64) if complex_ else np.dtype(dtype)
    assert pyr.dtype == dtype and pyr.highpass.dtype == dtype and pyr.residual.dtype == dtype
    assert all(b.dtype == band_dtype for row in pyr.bands for b in row)
    assert [row[0].shape for row in pyr.bands] == [(24, 20, 2), (12, 10, 2)]


def test_natural_image_reconstructs_to_the_issue_bound():
    cat = sample_images()[0].astype(np.float32) / 255  # colour, uint8 scaled to [0, 1]
    pyr = steerable_pyramid_freq(cat, orientations=4)
    assert np.abs(pyr.reconstruct() - cat).max() <= tolerance(cat.shape, np.float32, pyr.levels)


@pytest.mark.parametrize("twidth", [0.5, 1.0, 2.0, 3])
@pytest.mark.parametrize("levels", [0, 1, 3])
def test_every_twidth_and_level_count_is_exact(twidth, levels):
    x = image((32, 36))
    pyr = steerable_pyramid_freq(x, levels, 3, twidth=twidth)
    assert pyr.levels == levels
    assert np.abs(pyr.reconstruct() - x).max() <= tolerance(x.shape, np.float64, levels)


@pytest.mark.parametrize("shape", [(32, 32), (33, 27), (20, 18, 3)])
@pytest.mark.parametrize("complex_", [False, True])
def test_frame_is_tight_parseval(shape, complex_):
    x = image(shape, seed=3)
    pyr = steerable_pyramid_freq(x, orientations=4, complex=complex_)
    assert energy(pyr) == pytest.approx(float(np.sum(x**2)), rel=1e-13)


@pytest.mark.parametrize("shape", [(32, 32), (33, 27), (17, 30, 3)])
@pytest.mark.parametrize("orientations", [2, 3, 4, 6, 16])
def test_real_part_of_complex_bands_is_the_real_band(shape, orientations):
    x = image(shape, seed=4)
    real = steerable_pyramid_freq(x, orientations=orientations)
    cplx = steerable_pyramid_freq(x, orientations=orientations, complex=True)
    np.testing.assert_allclose(cplx.highpass, real.highpass, rtol=0, atol=1e-14)
    np.testing.assert_allclose(cplx.residual, real.residual, rtol=0, atol=1e-14)
    for r_row, c_row in zip(real.bands, cplx.bands):
        for r, c in zip(r_row, c_row):
            np.testing.assert_allclose(c.real, r, rtol=0, atol=1e-14)
            assert np.abs(c.imag).max() > 1e-3  # the quadrature part is really there


# --------------------------------------------------------------------------- matrices


@pytest.mark.parametrize("shape", [(16, 12), (15, 13), (9, 16)])
@pytest.mark.parametrize(("orientations", "complex_"), [(1, False), (3, False), (4, True)])
def test_fast_path_equals_the_fourier_matrix(shape, orientations, complex_):
    x = image(shape, seed=5)
    model = FrequencySteerableModel(shape, None, orientations, complex=complex_)
    matrix = model.analysis_matrix()
    pyr = model.decompose(x)
    spectra = [
        scipy.fft.fft2(a, norm="ortho").ravel() for a in pyr._arrays().values()
    ]  # the coefficients in the unitary Fourier basis, in the matrix's order
    want = matrix @ scipy.fft.fft2(x, norm="ortho").ravel()
    np.testing.assert_allclose(np.concatenate(spectra), want, rtol=0, atol=1e-13)


@pytest.mark.parametrize("shape", [(16, 12), (15, 13), (8, 8)])
@pytest.mark.parametrize("orientations", [1, 2, 5])
def test_fourier_matrix_is_a_tight_frame(shape, orientations):
    a = frequency_analysis_matrix(shape, orientations=orientations, twidth=1.5)
    n = shape[0] * shape[1]
    assert a.shape[1] == n
    assert max(np.diff(a.indptr)) <= 1  # a mask times a selection: one entry per row
    gram = (a.conj().T @ a).toarray()
    np.testing.assert_allclose(gram, np.eye(n), rtol=0, atol=1e-14)


# --------------------------------------------------------------------------- steering


def level0_band(x: np.ndarray, orientations: int, angle: float) -> np.ndarray:
    """Level 0's band at ``angle``, from the formulas of design §6, independently of the code."""
    h, w = x.shape
    u = np.fft.fftfreq(w) * 2  # Nyquist at 1
    v = -np.fft.fftfreq(h)[:, None] * 2  # y up
    rho = np.hypot(u, v)
    theta = np.arctan2(v, u)
    with np.errstate(divide="ignore"):
        t = np.log2(rho)
    low0 = np.cos(np.pi / 2 * np.clip(t + 1, 0, 1))  # transition [−1, 0], twidth 1
    band = np.sin(np.pi / 2 * np.clip(t + 2, 0, 1))  # transition [−2, −1]
    n = orientations - 1
    alpha = math.sqrt(math.factorial(n) ** 2 * 4**n / (orientations * math.factorial(2 * n)))
    mask = alpha * np.cos(theta - angle) ** n * band * low0
    z = np.fft.ifft2((-1j) ** n * mask * np.fft.fft2(x))
    return z.real


@pytest.mark.parametrize("orientations", [1, 2, 4, 5])
@pytest.mark.parametrize("angle", [0.0, 0.3, 2.0, -1.1])
def test_steering_gives_the_band_at_any_angle(orientations, angle):
    x = image((32, 28), seed=6)
    pyr = steerable_pyramid_freq(x, 2, orientations)
    np.testing.assert_allclose(
        pyr.steer(0, angle), level0_band(x, orientations, angle), rtol=0, atol=1e-13
    )
    shifted = pyr.steer(1, angle + np.pi)
    np.testing.assert_allclose(
        shifted, (-1) ** (orientations - 1) * pyr.steer(1, angle), rtol=0, atol=1e-13
    )


def test_steering_to_a_basis_angle_returns_that_band():
    pyr = steerable_pyramid_freq(image((32, 32), np.float32), 2, 4)
    for k in range(4):
        band = pyr.steer(1, np.pi * k / 4)
        assert band.dtype == np.float32
        np.testing.assert_allclose(band, pyr.bands[1][k], rtol=0, atol=1e-6)


def test_amplitude_and_phase_describe_the_complex_bands():
    pyr = steerable_pyramid_freq(image((32, 36, 3), np.float32), 2, 4, complex=True)
    amplitude, phase = pyr.amplitude(1), pyr.phase(-1)
    assert amplitude.shape == phase.shape == (4, 16, 18, 3)
    assert amplitude.dtype == phase.dtype == np.float32
    np.testing.assert_allclose(
        amplitude * np.exp(1j * phase), np.stack(pyr.bands[1]), rtol=0, atol=1e-6
    )


# --------------------------------------------------------------------------- pyrtools


def pyrtools_pyramid(x: np.ndarray, orientations: int, complex_: bool):
    pt = require_module("pyrtools", "pyrtools' SteerablePyramidFreq is the reference")
    return pt.pyramids.SteerablePyramidFreq(x, order=orientations - 1, is_complex=complex_)


@pytest.mark.parametrize("shape", [(64, 64), (48, 80), (96, 128)])
@pytest.mark.parametrize(
    ("orientations", "complex_"),
    [(1, False), (2, False), (4, False), (6, False), (2, True), (4, True), (6, True)],
)
def test_coefficients_agree_with_pyrtools(shape, orientations, complex_):
    """Every coefficient, after the documented conventions, to 2e-5 of its band's largest.

    The difference is pyrtools' lookup tables (its masks are linear interpolations of 256-
    and 3,000-sample tables), not rounding: 2e-6 … 8e-6 is what it reaches. Even sides
    only: pyrtools' grid is half a bin off for odd ones (module docstring of
    pyramids.steerable_freq). Neither library has a complex pyramid of one orientation.
    """
    if shape == (96, 128):  # a natural image, grey, in [0, 1]
        x = sample_images()[0][:96, :128].mean(axis=2) / 255
    else:
        x = image(shape, seed=7)
    ours = steerable_pyramid_freq(x, orientations=orientations, complex=complex_)
    theirs = pyrtools_pyramid(x, orientations, complex_)
    assert theirs.num_scales == ours.levels
    n0 = x.size

    def close(reference, mine, scale):
        reference = np.asarray(reference)
        error = np.abs(reference - scale * mine).max()
        assert error <= 2e-5 * np.abs(reference).max()

    close(theirs.pyr_coeffs["residual_highpass"], ours.highpass, 1.0)
    for level, row in enumerate(ours.bands):
        scale = math.sqrt(n0 / row[0].size)  # pyrtools' FFTs are not normalised
        for k, band in enumerate(row):
            wrapped = (orientations - k) % orientations  # its angles run clockwise
            sign = (-1) ** (orientations - 1) if k else 1
            mine = np.conj(band) if complex_ and k else band
            close(theirs.pyr_coeffs[(level, wrapped)], sign * mine, scale)
    close(theirs.pyr_coeffs["residual_lowpass"], ours.residual, math.sqrt(n0 / ours.residual.size))


# --------------------------------------------------------------------------- protocol


@pytest.mark.parametrize(
    ("shape", "dtype", "complex_"),
    [
        ((37, 42), np.float64, False),
        ((33, 30, 3), np.float32, True),
        ((16, 16), np.float64, True),
        ((7, 9), np.float64, True),  # no levels: the residuals only
    ],
)
def test_save_and_load_round_trip_bit_exactly(tmp_path, shape, dtype, complex_):
    pyr = steerable_pyramid_freq(image(shape, dtype), orientations=3, complex=complex_, twidth=1.5)
    loaded = load_pyramid(pyr.save(tmp_path / "p.npz"))
    assert type(loaded) is FrequencySteerablePyramid and loaded == pyr
    orientations = 3 if pyr.levels else None
    assert (loaded.complex, loaded.twidth, loaded.orientations) == (complex_, 1.5, orientations)
    for name, array in pyr._arrays().items():
        assert loaded._arrays()[name].dtype == array.dtype
        np.testing.assert_array_equal(loaded._arrays()[name], array)
    np.testing.assert_array_equal(loaded.reconstruct(), pyr.reconstruct())
    assert pyramid_kinds()["steerable_freq"] is FrequencySteerablePyramid


def test_protocol_properties_and_pictures():
    pyr = steerable_pyramid_freq(image((29, 40, 3), np.float32), 2, 3, complex=True)
    assert (pyr.levels, pyr.shape, pyr.dtype, pyr.orientations) == (2, (29, 40, 3), np.float32, 3)
    pictures = pyr.pictures()
    names = list(pictures)
    assert names[0] == "highpass" and names[-1] == "residual"
    assert len(pictures) == 2 + 2 * 3
    assert all(p.min() >= 0 and p.max() <= 1 for p in pictures.values())
    montage = pyr.montage(pictures)
    assert montage.ndim == 3 and montage.min() >= 0 and montage.max() <= 1
    assert repr(pyr).startswith("FrequencySteerablePyramid(levels=2, shape=(29, 40, 3)")


def test_a_model_is_reused_for_every_image_of_its_shape():
    model = pyramids.FrequencySteerableModel((24, 30), 2, 4)
    for seed in range(3):
        x = image((24, 30, 3), seed=seed)
        pyr = model.decompose(x, threads=1)
        assert pyr == steerable_pyramid_freq(x, 2, 4, threads=2)
        assert pyr.model() is model
    with pytest.raises(ValueError, match=r"image must have shape \(24, 30\)"):
        model.decompose(image((24, 31)))


def test_edited_coefficients_reconstruct():
    x = image((32, 32), seed=8)
    pyr = steerable_pyramid_freq(x, 2, 4)
    edited = FrequencySteerablePyramid(
        np.zeros_like(pyr.highpass), pyr.bands, pyr.residual, twidth=pyr.twidth
    )
    # without the high-pass, the image loses exactly its high-pass part H0ᵀH0 x
    highpass_only = FrequencySteerablePyramid(
        pyr.highpass,
        [[np.zeros_like(b) for b in row] for row in pyr.bands],
        np.zeros_like(pyr.residual),
    )
    np.testing.assert_allclose(
        edited.reconstruct() + highpass_only.reconstruct(), x, rtol=0, atol=1e-14
    )


@pytest.mark.parametrize("kind", ["steerable-freq", "complex"])
def test_cli_decomposes_and_reconstructs(tmp_path, kind):
    x = image((40, 52, 3), seed=9)
    src = write_image(tmp_path / "x.png", x)
    out = tmp_path / kind
    args = ["decompose", str(src), "--kind", kind, "-o", str(out), "--orientations", "6"]
    assert main(args) == 0
    pyr = load_pyramid(out / "pyramid.npz")
    assert pyr.complex == (kind == "complex") and pyr.orientations == 6
    assert (out / "montage.png").is_file() and (out / "level0_orientation5.png").is_file()
    assert main(["reconstruct", str(out), "-o", str(tmp_path / "y.png")]) == 0
    np.testing.assert_array_equal(read_image(tmp_path / "y.png"), read_image(src))
    assert main(["reconstruct", str(out), "--method", "exact", "-o", str(tmp_path / "z.png")]) == 2
    assert not (tmp_path / "z.png").exists()


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"levels": 4}, r"levels must be in 0 … 3 for an image of shape \(32, 40\), got 4"),
        ({"levels": -1}, "levels must be in 0 … 3"),
        ({"levels": 1.5}, "levels must be an integer"),
        ({"orientations": 0}, r"orientations must be in 1 … 16, got 0"),
        ({"orientations": 17}, r"orientations must be in 1 … 16, got 17"),
        ({"orientations": 1, "complex": True}, "orientations must be at least 2 for a complex"),
        ({"twidth": 0}, "twidth must be a positive number of octaves, got 0"),
        ({"twidth": float("nan")}, "twidth must be a positive"),
        ({"twidth": "1"}, "twidth must be a positive"),
        ({"complex": "yes"}, "complex must be True or False"),
        ({"threads": 0}, "threads must be a positive integer"),
    ],
)
def test_bad_arguments_are_clear_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        steerable_pyramid_freq(image((32, 40)), **kwargs)


def test_bad_coefficients_and_requests_are_clear_errors():
    pyr = steerable_pyramid_freq(image((32, 32)), 2, 4)
    with pytest.raises(ValueError, match="steer needs a real pyramid"):
        steerable_pyramid_freq(image((32, 32)), 2, 4, complex=True).steer(0, 0.1)
    with pytest.raises(ValueError, match="amplitude and phase need a complex pyramid"):
        pyr.amplitude(0)
    with pytest.raises(ValueError, match=r"level must be in 0 … 1, got 2"):
        pyr.steer(2, 0.0)
    with pytest.raises(ValueError, match=r"bands\[0\]\[0\] must be complex128"):
        FrequencySteerablePyramid(pyr.highpass, pyr.bands, pyr.residual, complex=True)
    bands = [row[:] for row in pyr.bands]
    bands[1] = bands[1][:3]
    with pytest.raises(ValueError, match=r"bands\[1\] must hold 4 orientations"):
        FrequencySteerablePyramid(pyr.highpass, bands, pyr.residual)
    with pytest.raises(ValueError, match="residual must be float64 of shape"):
        FrequencySteerablePyramid(pyr.highpass, pyr.bands, pyr.residual[:-1])
    with pytest.raises(TypeError, match="image must be a real numeric array"):
        steerable_pyramid_freq(np.zeros((16, 16), complex))


@pytest.mark.parametrize("complex_", [False, True])
def test_an_overflowing_analysis_is_a_clear_error(complex_):
    # finite float32 pixels near its largest value: the unitary FFT's sums (up to √N times
    # a pixel before the scaling) overflow, so the coefficients would not be finite
    x = np.full((32, 32), np.finfo(np.float32).max / 2, np.float32)
    with pytest.raises(ValueError, match="contains NaN or infinite values"):
        FrequencySteerableModel(x.shape, 2, 4, complex=complex_).decompose(x)


def test_a_file_with_a_bad_complex_flag_is_refused():
    arrays = steerable_pyramid_freq(image((16, 16)), 1, 2).to_arrays()
    arrays["meta"] = np.array(str(arrays["meta"]).replace('"complex": false', '"complex": 0'))
    with pytest.raises(PyramidFileError, match="meta's 'complex' must be true or false"):
        FrequencySteerablePyramid.from_arrays(arrays)


# --------------------------------------------------------------------------- frame stacks


@pytest.mark.parametrize("shape", [(6, 32, 24), (3, 17, 21, 3), (1, 8, 9)])
@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_stack_of_frames_equals_frame_by_frame(shape, complex_, dtype):
    frames = image(shape, dtype)
    model = FrequencySteerableModel(shape[1:], orientations=3 if not complex_ else 4,
                                    complex=complex_)  # fmt: skip
    highpass, bands, residual = model.analyse_frames(frames, threads=2)
    for t, frame in enumerate(frames):
        hp, bs, res = model.analyse(frame, threads=1)
        # the same FFT sizes and masks on each frame: equal but for the FFT library's
        # batched code path, which may round differently (a few units of eps per value)
        scale = 8 * np.finfo(dtype).eps
        assert np.abs(highpass[t] - hp).max() <= scale
        assert np.abs(residual[t] - res).max() <= scale
        for level, row in enumerate(bs):
            for k, band in enumerate(row):
                assert bands[level][k][t].dtype == band.dtype
                assert np.abs(bands[level][k][t] - band).max() <= scale
    out = model.synthesise_frames(highpass, bands, residual)
    assert out.shape == frames.shape and out.dtype == dtype
    for t, frame in enumerate(frames):
        single = model.synthesise(*model.analyse(frame))
        assert np.abs(out[t] - single).max() <= 8 * np.finfo(dtype).eps
    assert np.abs(out - frames).max() <= tolerance(shape[1:], dtype, model.levels)


def test_stacked_bands_are_the_listed_bands():
    model = FrequencySteerableModel((20, 24), 2, 4, complex=True)
    x = image((20, 24), np.float32)
    hp, listed, res = model.analyse(x)
    _, stacked, _ = model.analyse(x, stacked=True)
    for row, level in zip(listed, stacked):
        assert level.shape == (4, *row[0].shape)
        assert np.array_equal(level, np.stack(row))
    assert np.array_equal(model.synthesise(hp, stacked, res), model.synthesise(hp, listed, res))


def test_frames_of_another_shape_are_refused():
    model = FrequencySteerableModel((16, 16), 1)
    with pytest.raises(ValueError, match=r"frames must have shape \(t, 16, 16\[, c\]\)"):
        model.analyse_frames(image((2, 16, 15)))
    with pytest.raises(ValueError, match=r"frames must have shape \(t, h, w\[, c\]\)"):
        model.analyse_frames(image((16, 16)))
