"""Video motion magnification, streamed frame by frame (docs/design.md §6.1).

Two published methods:

- ``phase`` (Wadhwa, Rubinstein, Durand & Freeman, "Phase-based video motion processing",
  SIGGRAPH 2013), on the complex steerable pyramid (:mod:`pyramids.steerable_freq`): the
  local phase of every complex band, taken relative to the first frame, is band-passed in
  time, optionally smoothed in space weighted by the local amplitude, multiplied by ``α``
  and added back to the phase. The shift is bounded so that large ``α`` does not alias.
- ``linear`` (Wu, Rubinstein, Shih, Guttag, Durand & Freeman, "Eulerian video
  magnification for revealing subtle changes in the world", SIGGRAPH 2012), on the
  Laplacian pyramid (:mod:`pyramids.laplacian`): every band is band-passed in time and
  ``α_ℓ`` times the result is added back, ``α_ℓ`` attenuated below the spatial wavelength
  ``λc``.

The temporal filter is a causal IIR Butterworth band-pass designed once
(:class:`TemporalBandpass`) whose state is kept per coefficient, so that memory stays
constant whatever the video's length: :func:`magnify` is a generator that takes frames and
yields frames, holding only the filters' states and the reference frame's pyramid.

Colour is processed in the YIQ space the papers use: the phase method magnifies the
luminance ``Y`` and carries the chrominance ``I, Q`` of each frame over unchanged; the
linear method magnifies all three with the chrominance's ``α`` multiplied by
``chrom_attenuation``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import scipy.ndimage
import scipy.signal

from .arrays import as_float_image
from .laplacian import laplacian_pyramid, max_levels, reconstruct_laplacian
from .parallel import resolve_threads, run_parts
from .steerable_freq import FrequencySteerableModel

__all__ = [
    "MAX_ALPHA",
    "MAX_ORDER",
    "METHODS",
    "LinearMagnifier",
    "PhaseMagnifier",
    "TemporalBandpass",
    "check_band",
    "linear_alphas",
    "magnify",
]

METHODS = ("phase", "linear")
#: RGB → YIQ (the NTSC matrix, as in MATLAB's ``rgb2ntsc``); rows Y, I, Q.
RGB_TO_YIQ = np.array(
    [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=np.float64
)
YIQ_TO_RGB = np.linalg.inv(RGB_TO_YIQ)
#: Largest phase shift added to a band: ``|α Δφ| ≤ π/2`` is Wadhwa et al.'s bound
#: ``α δ(t) < λ/4`` for octave-bandwidth pyramids, in phase units (docs/design.md §6.1).
MAX_PHASE_SHIFT = math.pi / 2
#: Largest ``α``: ``1 / eps`` of float32 (2²³). Beyond it the added ``α·B`` swamps the
#: signal it is added to in float32 (the linear method's frames become rounding noise),
#: and ``α·Δφ`` overflows float32 for ``α`` above 1e38 (NaN frames in the phase method).
MAX_ALPHA = float(1 / np.finfo(np.float32).eps)
#: Largest Butterworth order of the temporal filter. Each order keeps two more copies of
#: the pyramid as filter state (about 90 MB each for a 1080p frame, complex pyramid of 4
#: orientations: 2.8 GB at order 16); scipy's design fails (NaN) by order 500, and an
#: order of 10⁵ takes minutes. The papers use orders 1 and 2.
MAX_ORDER = 16


# --------------------------------------------------------------------------- arguments


def _check_positive(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    number = float(value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return number


def _check_alpha(alpha: object) -> float:
    alpha = _check_positive(alpha, "alpha")
    if alpha > MAX_ALPHA:
        raise ValueError(f"alpha must be at most {MAX_ALPHA:g} (1/eps of float32), got {alpha:g}")
    return alpha


def check_band(band: Sequence[float], fps: float) -> tuple[float, float]:
    """``(low, high)`` in Hz if ``0 < low < high < fps / 2`` (the Nyquist rate), else an error.

    Raises
    ------
    ValueError
        Naming which of the three conditions fails.
    """
    fps = _check_positive(fps, "fps")
    if len(band) != 2:
        raise ValueError(f"band must be (low, high) in Hz, got {band!r}")
    low, high = (_check_positive(f, "band frequencies") for f in band)
    if low >= high:
        raise ValueError(f"band low ({low:g} Hz) must be below band high ({high:g} Hz)")
    if high >= fps / 2:
        raise ValueError(
            f"band high ({high:g} Hz) must be below the Nyquist rate fps/2 = {fps / 2:g} Hz "
            f"(fps {fps:g})"
        )
    return low, high


# --------------------------------------------------------------------------- time


class TemporalBandpass:
    """A causal Butterworth band-pass applied one time step at a time to whole arrays.

    ``scipy.signal.butter(order, (low, high), 'bandpass', fs=fps, output='sos')``, run as
    second-order sections in transposed direct form II, with two state arrays per section
    and coefficient. The first input sets the state to the filter's steady state for a
    constant signal of that value (``scipy.signal.sosfilt_zi``), so a still start gives no
    transient. The gain is 1 with zero phase at the centre of the pass band (the bilinear
    transform's image of the analogue centre; within 0.02% and 0.012 rad of it at
    ``√(low·high)`` for 1.5–3 Hz at 30 frames/s: :meth:`response`).

    Parameters
    ----------
    low, high : float
        Pass band in Hz, ``0 < low < high < fps/2``.
    fps : float
        Sampling rate (frames per second).
    order : int
        Butterworth order (the band-pass has twice as many poles); default 1.

    Examples
    --------
    >>> f = TemporalBandpass(1.0, 4.0, 30.0)
    >>> t = np.arange(300) / 30.0
    >>> y = np.array([f(np.array([np.sin(2 * np.pi * 2.0 * s)]))[0] for s in t])
    >>> round(float(np.abs(y[150:]).max()), 2)  # 2 Hz is the centre: gain 1
    1.0
    """

    def __init__(self, low: float, high: float, fps: float, order: int = 1):
        low, high = check_band((low, high), fps)
        if (
            isinstance(order, bool)
            or not isinstance(order, (int, np.integer))
            or not 1 <= order <= MAX_ORDER
        ):
            raise ValueError(f"order must be an integer in 1 … {MAX_ORDER}, got {order!r}")
        self.band, self.fps, self.order = (low, high), float(fps), int(order)
        self.sos = scipy.signal.butter(order, (low, high), "bandpass", fs=fps, output="sos")
        # A band edge very close to 0 or fps/2 puts poles on the unit circle in float64
        # (or beyond): such a filter would not decay, and sosfilt_zi cannot start it. A
        # section 1 + a1 z⁻¹ + a2 z⁻² has both poles inside iff |a2| < 1 and |a1| < 1 + a2
        # (the stability triangle, read off the coefficients: sos2zpk warns at high orders).
        a1, a2 = self.sos[:, 4], self.sos[:, 5]
        if not (
            np.isfinite(self.sos).all() and np.all(np.abs(a2) < 1) and np.all(np.abs(a1) < 1 + a2)
        ):
            raise ValueError(
                f"band {low:g}–{high:g} Hz at {fps:g} frames/s gives an unstable filter "
                "(an edge too close to 0 or fps/2); move the band inwards"
            )
        self._state: list[list[np.ndarray]] | None = None

    def response(self, frequency: float) -> complex:
        """The filter's complex gain at ``frequency`` (Hz)."""
        _, h = scipy.signal.sosfreqz(self.sos, worN=[frequency], fs=self.fps)
        return complex(h[0])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Filter one time step ``x`` (any shape, kept for every call); returns a new array."""
        if self._state is None:
            zi = scipy.signal.sosfilt_zi(self.sos)  # steady state per unit constant input
            self._state = [[(z * x).astype(x.dtype) for z in section] for section in zi]
        y = x
        for (b0, b1, b2, _, a1, a2), (z1, z2) in zip(self.sos, self._state):
            u = y
            y = z1 + u * x.dtype.type(b0)
            # z1 ← b1·u − a1·y + z2;  z2 ← b2·u − a2·y   (in place: the state's memory is kept)
            np.multiply(y, x.dtype.type(-a1), out=z1)
            z1 += z2
            if b1:
                z1 += u * x.dtype.type(b1)
            np.multiply(y, x.dtype.type(-a2), out=z2)
            if b2:
                z2 += u * x.dtype.type(b2)
        return y


# --------------------------------------------------------------------------- colour


def _as_float(frame: np.ndarray) -> np.ndarray:
    """A frame as floats: float64 kept, anything else float32 (uint8 scaled to [0, 1]
    directly, others as by as_float_image)."""
    if isinstance(frame, np.ndarray) and frame.dtype == np.uint8:
        return frame.astype(np.float32) * np.float32(1 / 255)
    image = as_float_image(frame)
    keep = isinstance(frame, np.ndarray) and frame.dtype == np.float64
    return image if keep else image.astype(np.float32, copy=False)


def _split_colour(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """``(Y, rgb)`` of a colour frame, ``(frame, None)`` of a grey one."""
    if frame.ndim == 2:
        return frame, None
    if frame.shape[2] != 3:
        raise ValueError(f"frames must be grey (h, w) or RGB (h, w, 3), got {frame.shape}")
    y = frame @ RGB_TO_YIQ[0].astype(frame.dtype)
    return y, frame


# --------------------------------------------------------------------------- phase


class PhaseMagnifier:
    """Phase-based motion magnification (Wadhwa et al. 2013) of frames of one shape.

    Call it on each frame in order; it keeps the first frame's pyramid (the reference) and
    one temporal filter per level.

    Parameters
    ----------
    shape : tuple of int
        ``(h, w)`` or ``(h, w, 3)``.
    fps : float
    alpha : float
        Magnification ``α > 0`` of the band-passed phase.
    band : (float, float)
        Temporal pass band in Hz.
    levels : int, optional
        Levels of the complex pyramid (octave bands); default all
        (:func:`pyramids.max_frequency_levels`).
    orientations : int
        2 … 16, default 4.
    sigma : float
        Standard deviation, in pixels of each level, of the amplitude-weighted Gaussian
        smoothing of the filtered phase; 0 (default) for none.
    attenuate_other : bool
        Replace each band's phase by the reference's plus ``(1 + α)`` times the band-passed
        phase: motion outside the band is removed.
    order : int
        Butterworth order of the temporal filter.
    threads : int, optional
        FFT workers.
    """

    def __init__(
        self,
        shape: Sequence[int],
        fps: float,
        alpha: float,
        band: Sequence[float],
        *,
        levels: int | None = None,
        orientations: int = 4,
        sigma: float = 0.0,
        attenuate_other: bool = False,
        order: int = 1,
        threads: int | None = None,
    ):
        self.alpha = _check_alpha(alpha)
        self.band = check_band(band, fps)
        self.fps = float(fps)
        self.shape = tuple(int(n) for n in shape)
        # wider than the frame, the (periodic) smoothing is a plain mean: a larger σ only
        # costs time (scipy's kernel has 8σ + 1 taps), an infinite one fails inside scipy
        widest = max(self.shape[:2], default=0)
        if isinstance(sigma, bool) or not (
            isinstance(sigma, (int, float)) and 0 <= sigma <= widest
        ):
            raise ValueError(
                f"sigma must be a number in 0 … {widest} (the frame's larger side), got {sigma!r}"
            )
        self.sigma = float(sigma)
        self.attenuate_other = bool(attenuate_other)
        self.model = FrequencySteerableModel(self.shape[:2], levels, orientations, complex=True)
        # one filter per band (level, orientation): the bands are processed side by side
        self.filters = [
            [TemporalBandpass(*self.band, fps, order) for _ in range(self.model.orientations)]
            for _ in range(self.model.levels)
        ]
        self.threads = resolve_threads(threads)
        self._reference: list[np.ndarray] | None = None  # conj(c_ref) / |c_ref| per level

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """The magnified frame (the frame's shape; float64 for a float64 frame, else
        float32; not clipped)."""
        x = _as_float(frame)
        if x.shape != self.shape:
            raise ValueError(f"frame of shape {x.shape}, but the video's is {self.shape}")
        y, rgb = _split_colour(x)
        highpass, bands, residual = self.model.analyse(y, stacked=True, threads=self.threads)
        if self._reference is None:
            self._reference = [
                np.conj(c) / np.maximum(np.abs(c), np.finfo(np.float32).tiny) for c in bands
            ]
        out = []
        for c, reference, filters in zip(bands, self._reference, self.filters):
            level = np.empty_like(c)

            def task(start, stop, c=c, reference=reference, filters=filters, level=level):
                for k in range(start, stop):
                    self._magnify_band(c[k], reference[k], filters[k], level[k])

            # the K bands of a level on the package's threads (numpy releases the GIL)
            run_parts(task, len(c), self.threads)
            out.append(level)
        y_new = self.model.synthesise(highpass, out, residual, threads=self.threads)
        if rgb is None:
            return y_new
        # Y changes, I and Q stay: the RGB change is ΔY times YIQ→RGB's first column
        return rgb + (y_new - y)[..., None] * YIQ_TO_RGB[:, 0].astype(x.dtype)

    def _magnify_band(
        self, c: np.ndarray, reference: np.ndarray, bandpass: TemporalBandpass, out: np.ndarray
    ) -> None:
        """``out ← c · exp(i·clip(α·B(Δφ), ±π/2))`` for one complex band (docs §6.1)."""
        # phase difference to the reference frame, in (−π, π]: no unwrapping needed while
        # the motion stays below half a wavelength of the band
        delta = bandpass(np.angle(c * reference))
        if self.sigma > 0:
            delta = self._smooth(delta, np.abs(c))
        shift = delta * delta.dtype.type(self.alpha)
        np.clip(shift, -MAX_PHASE_SHIFT, MAX_PHASE_SHIFT, out=shift)
        if self.attenuate_other:
            # |c| with the reference phase plus the band-passed phase and its shift
            shift += delta
            base = np.abs(c) * np.conj(reference)
        else:
            base = c
        np.cos(shift, out=out.real)  # exp(i·shift), built in complex64 in place
        np.sin(shift, out=out.imag)
        out *= base

    def _smooth(self, delta: np.ndarray, amplitude: np.ndarray) -> np.ndarray:
        """``G_σ * (A·Δφ) / G_σ * A`` over one band (periodic, like the pyramid)."""
        weighted = scipy.ndimage.gaussian_filter(delta * amplitude, self.sigma, mode="wrap")
        weight = scipy.ndimage.gaussian_filter(amplitude, self.sigma, mode="wrap")
        return weighted / np.maximum(weight, np.finfo(np.float32).tiny)


# --------------------------------------------------------------------------- linear


def linear_alphas(levels: int, alpha: float, lambda_c: float) -> list[float]:
    """``α_ℓ`` of the linear method for bands ``0 … levels − 1`` and the residual.

    Wu et al.'s bound ``(1 + α) δ(t) < λ/8``, with the motion ``δ = λc / (8 (1 + α))`` that
    just reaches it at ``λc``, allows ``α_ℓ = (1 + α) λ_ℓ / λc − 1`` at the wavelength
    ``λ_ℓ``; it is clipped to ``[0, α]``. ``λ_ℓ = 2^(ℓ+2)`` pixels: the period at the
    centre of band ``ℓ`` (4 pixels at the finest band), ``2^(L+2)`` for the residual.

    Examples
    --------
    >>> linear_alphas(3, 10.0, 16.0)
    [1.75, 4.5, 10.0, 10.0]
    """
    alpha = _check_alpha(alpha)
    lambda_c = _check_positive(lambda_c, "lambda_c")
    return [
        float(min(alpha, max(0.0, (1 + alpha) * 2.0 ** (level + 2) / lambda_c - 1)))
        for level in range(levels + 1)
    ]


class LinearMagnifier:
    """Linear Eulerian video magnification (Wu et al. 2012) of frames of one shape.

    Parameters
    ----------
    shape, fps, alpha, band, order, threads
        As for :class:`PhaseMagnifier`.
    levels : int, optional
        Reductions of the Laplacian pyramid; default :func:`pyramids.max_levels` minus 2
        (the residual keeps a few pixels per side).
    lambda_c : float
        Cut-off wavelength λc in pixels (:func:`linear_alphas`); default 16.
    chrom_attenuation : float
        Factor on ``α`` for the chrominance ``I, Q``; default 0.1.
    boundary : str
        The pyramid's boundary mode (``reflect``; ``periodic`` for periodic content).
    """

    def __init__(
        self,
        shape: Sequence[int],
        fps: float,
        alpha: float,
        band: Sequence[float],
        *,
        levels: int | None = None,
        lambda_c: float = 16.0,
        chrom_attenuation: float = 0.1,
        boundary: str = "reflect",
        order: int = 1,
        threads: int | None = None,
    ):
        self.alpha = _check_alpha(alpha)
        self.band = check_band(band, fps)
        self.shape = tuple(int(n) for n in shape)
        most = max_levels(self.shape)
        if levels is None:
            levels = max(0, most - 2)
        elif (
            isinstance(levels, bool)
            or not isinstance(levels, (int, np.integer))
            or not 0 <= levels <= most
        ):
            raise ValueError(
                f"levels must be in 0 … {most} for a frame of shape {self.shape}, got {levels!r}"
            )
        self.levels = int(levels)
        if not (
            isinstance(chrom_attenuation, (int, float))
            and math.isfinite(chrom_attenuation)
            and chrom_attenuation >= 0
        ):
            raise ValueError(f"chrom_attenuation must be ≥ 0, got {chrom_attenuation!r}")
        self.alphas = linear_alphas(levels, alpha, lambda_c)
        gains = np.ones(3 if len(self.shape) == 3 else 1, dtype=np.float32)
        gains[1:] = chrom_attenuation
        self.gains = gains
        self.boundary = boundary
        self.filters = [TemporalBandpass(*self.band, fps, order) for _ in range(levels + 1)]
        self.threads = resolve_threads(threads)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """The magnified frame (the frame's shape; float64 for a float64 frame, else
        float32; not clipped)."""
        x = _as_float(frame)
        if x.shape != self.shape:
            raise ValueError(f"frame of shape {x.shape}, but the video's is {self.shape}")
        colour = x.ndim == 3
        if colour:
            if x.shape[2] != 3:
                raise ValueError(f"frames must be grey or RGB, got {x.shape}")
            x = x @ RGB_TO_YIQ.T.astype(x.dtype)
        pyramid = laplacian_pyramid(x, self.levels, boundary=self.boundary, threads=self.threads)
        coefficients = [*pyramid.bands, pyramid.residual]
        for level, (c, bandpass) in enumerate(zip(coefficients, self.filters)):
            gain = self.alphas[level] * (self.gains if colour else self.gains[0])
            c += bandpass(c) * gain.astype(c.dtype)
        out = reconstruct_laplacian(
            coefficients[:-1], coefficients[-1], boundary=self.boundary, threads=self.threads
        )
        return out @ YIQ_TO_RGB.T.astype(out.dtype) if colour else out


# --------------------------------------------------------------------------- streaming


def magnify(
    frames: Iterable[np.ndarray],
    fps: float,
    alpha: float,
    band: Sequence[float],
    *,
    method: str = "phase",
    **options,
) -> Iterator[np.ndarray]:
    """Magnify the motion in a stream of frames, one frame in, one frame out.

    A generator: it reads a frame from ``frames`` only when the next output is asked for,
    and holds nothing but the magnifier's state, so memory does not grow with the video.
    The magnifier (:class:`PhaseMagnifier` or :class:`LinearMagnifier`) is built for the
    first frame's shape; a later frame of another shape is an error.

    Parameters
    ----------
    frames : iterable of ndarray, shape (h, w) or (h, w, 3)
        uint8 (scaled to [0, 1]) or floats in [0, 1].
    fps : float
        Frame rate, for the temporal filter.
    alpha : float
        Magnification factor ``α > 0``.
    band : (float, float)
        Temporal pass band ``(low, high)`` in Hz, ``0 < low < high < fps/2``.
    method : {'phase', 'linear'}
    **options
        Passed to the magnifier (``levels``, ``orientations``, ``sigma``,
        ``attenuate_other``, ``lambda_c``, ``chrom_attenuation``, ``order``, ``threads``).

    Yields
    ------
    ndarray, the frames' shape, float64 for float64 frames, else float32 (values may
    leave [0, 1]: clip when writing)

    Raises
    ------
    ValueError
        For a bad ``method``, ``alpha`` or ``band`` (checked at the call, before any frame
        is read), a bad option (checked with the first frame, whose shape bounds
        ``levels`` and ``sigma``), or a frame of another shape than the first.

    Examples
    --------
    >>> frames = (np.full((32, 32), 0.5) + 0.01 * np.sin(t) for t in range(4))
    >>> [f.shape for f in magnify(frames, 30.0, 10.0, (1.0, 5.0))]
    [(32, 32), (32, 32), (32, 32), (32, 32)]
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    _check_alpha(alpha)
    check_band(band, fps)
    kind = PhaseMagnifier if method == "phase" else LinearMagnifier
    return _stream(frames, kind, fps, alpha, band, options)


def _stream(frames, kind, fps, alpha, band, options) -> Iterator[np.ndarray]:
    magnifier = None
    for frame in frames:
        if magnifier is None:
            magnifier = kind(np.shape(frame), fps, alpha, band, **options)
        yield magnifier(frame)
