"""Frequency-domain and complex steerable pyramids (Portilla & Simoncelli 2000; docs/design.md §6).

    X = DFT(x)  ──H0──> highpass
                ──L0──> Y_0 ──c·B_ℓ·A_k──> band (ℓ, k)
                         └──L_ℓ, crop──> Y_{ℓ+1} … low-pass residual

Every stage is a diagonal mask on the centred spectrum, and halving is a crop of it, so in
the Fourier basis the whole analysis is a sparse matrix with at most one entry per row
(:func:`frequency_analysis_matrix`). The masks, on the polar grid ``(ρ, θ)`` of the
*original* image's frequencies (``ρ = 1`` at Nyquist along an axis; ``θ`` counter-clockwise
from the x axis as displayed, y up):

- radial: raised cosines on a ``log2 ρ`` axis, ``twidth`` octaves wide, written as
  ``high(s) = sin(πs/2)``, ``low(s) = cos(πs/2)`` with ``s`` the position in the transition
  (0 below, 1 above), so that ``high² + low² = 1`` exactly. ``H0``/``L0`` change over at
  ``log2 ρ ∈ [−twidth, 0]``; level ``ℓ``'s band-pass ``B_ℓ`` and low-pass ``L_ℓ`` over
  ``[−ℓ − 1 − twidth, −ℓ − 1]``. ``L_ℓ`` vanishes where ``ρ ≥ 2^(−ℓ−1)``, i.e. outside the
  crop, so the crop loses nothing.
- angular, ``K`` orientations (order ``n = K − 1``): ``A_k(θ) = α cos(θ − πk/K)^n`` with
  ``α² = 4^n / (K·C(2n, n))``, so ``Σ_k A_k² = 1``. The complex (analytic) pyramid uses
  ``2A_k`` on the half-plane ``|θ − πk/K| < π/2`` and 0 on the other half; its real part is the
  real pyramid's band.
- each band is multiplied by ``c = (−i)^n``, which makes the real pyramid's bands real (its
  masks are even or odd in ``ω``), as in pyrtools.

All transforms are unitary (``norm='ortho'``), so the analysis is a tight frame:
``‖h‖² + Σ‖b‖² + ‖r‖² = ‖x‖²`` and the synthesis is the adjoint. For the complex pyramid,
``reconstruct`` synthesises from the real parts of the bands (which are the real pyramid's
bands), and for a real image ``‖h‖² + ½Σ‖c‖² + ‖r‖² = ‖x‖²``.

Conventions against pyrtools' ``SteerablePyramidFreq`` (which this module does not use):
pyrtools' ``order`` is ``orientations − 1`` and its ``height`` is ``levels``; its angles are
measured with the row axis pointing down (clockwise as displayed), so its band ``(K − k) mod
K`` is ours ``k`` times ``(−1)^n`` for ``k ≥ 1`` (complex: the conjugate of ours, its half-plane
being the opposite one); its FFTs are not normalised,
so its level-``ℓ`` coefficients are ours times ``sqrt(N_0 / N_ℓ)`` (``N`` the pixel counts);
it evaluates its masks from lookup tables, which limits agreement to about 1e-5 of a band's
scale; and for odd sides its analysis grid is half a frequency bin off (it warns that odd
sizes do not reconstruct), while ours is exact for every size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.fft
import scipy.sparse as sp
from numpy.typing import ArrayLike

from .arrays import all_finite, as_float_image
from .parallel import resolve_threads
from .pyramid import OrientedPyramid, PyramidFileError, level_shapes, meta_value
from .steerable_filters import steering_weights

__all__ = [
    "MAX_ORIENTATIONS",
    "FrequencySteerableModel",
    "FrequencySteerablePyramid",
    "frequency_analysis_matrix",
    "max_frequency_levels",
    "steerable_pyramid_freq",
]

#: Largest number of orientations (pyrtools' ``order`` 15).
MAX_ORIENTATIONS = 16


# --------------------------------------------------------------------------- validation


# Below this many values in one call, a second FFT worker costs more than it saves: pocketfft
# hands lines to its thread pool per call, about 0.1 ms on this package's 2-core test machine,
# more than a whole 120×160 transform of four bands takes on one (docs/design.md §6).
_ONE_WORKER_BELOW = 1 << 17


def _split(array: np.ndarray, workers: int) -> int:
    """The FFT workers for a transform of ``array``: one for small arrays, else ``workers``."""
    return workers if array.size >= _ONE_WORKER_BELOW else 1


def max_frequency_levels(shape: Sequence[int]) -> int:
    """Largest number of levels for an image of ``shape``: ``floor(log2(min(h, w))) − 2``.

    The same bound as pyrtools': the coarsest band-pass mask then still lies inside the
    spectrum, and the low-pass residual keeps at least a few samples per side.

    Parameters
    ----------
    shape : sequence of int
        ``(h, w)`` or ``(h, w, c)``.

    Returns
    -------
    int, at least 0
    """
    h, w = int(shape[0]), int(shape[1])
    return max(0, math.floor(math.log2(min(h, w))) - 2)


def _check_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _check_orientations(orientations: object, complex_: bool) -> int:
    k = _check_int(orientations, "orientations")
    if not 1 <= k <= MAX_ORIENTATIONS:
        raise ValueError(f"orientations must be in 1 … {MAX_ORIENTATIONS}, got {k}")
    if complex_ and k == 1:
        # order 0: the isotropic mask does not vanish on the half-plane's edge, so the
        # analytic split is not defined there (pyrtools and plenoptic refuse it too)
        raise ValueError("orientations must be at least 2 for a complex pyramid, got 1")
    return k


def _check_twidth(twidth: object) -> float:
    if isinstance(twidth, bool) or not isinstance(twidth, (int, float, np.integer, np.floating)):
        raise ValueError(f"twidth must be a positive number of octaves, got {twidth!r}")
    value = float(twidth)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"twidth must be a positive number of octaves, got {twidth!r}")
    return value


def _check_levels(levels: object, shape: tuple[int, int]) -> int:
    most = max_frequency_levels(shape)
    if levels is None:
        return most
    value = _check_int(levels, "levels")
    if not 0 <= value <= most:
        raise ValueError(
            f"levels must be in 0 … {most} for an image of shape {shape}, got {value}"
        )
    return value


# --------------------------------------------------------------------------- the masks


def _frequencies(n: int) -> np.ndarray:
    """DFT indices ``k`` of a side of ``n``, unshifted: ``−floor(n/2) … ceil(n/2) − 1``."""
    return np.fft.fftfreq(n, 1.0 / n).round().astype(np.int64)


def _crop_indices(n: int, m: int) -> np.ndarray:
    """Positions, in a side of ``n`` (unshifted order), of the ``m`` central frequencies."""
    return _frequencies(m) % n


def _runs(indices: np.ndarray) -> list[tuple[slice, slice]]:
    """``indices`` as runs of consecutive integers: ``(destination, source)`` slice pairs.

    A crop of a spectrum takes two runs per side (the non-negative and the negative
    frequencies), so it is four block copies instead of a fancy-indexed gather.
    """
    breaks = np.flatnonzero(np.diff(indices) != 1) + 1
    starts, ends = np.r_[0, breaks], np.r_[breaks, len(indices)]
    return [
        (slice(int(a), int(b)), slice(int(indices[a]), int(indices[a]) + int(b - a)))
        for a, b in zip(starts, ends)
    ]


def _raised_cosine(log_rho: np.ndarray, top: float, twidth: float) -> tuple[np.ndarray, ...]:
    """``(high, low)`` on a transition ``[top − twidth, top]`` in ``log2 ρ`` (module docstring)."""
    s = np.clip((log_rho - (top - twidth)) / twidth, 0.0, 1.0)
    return np.sin(0.5 * np.pi * s), np.sin(0.5 * np.pi * (1.0 - s))  # exact 0 and 1 at the ends


def _angular(theta: np.ndarray, orientations: int, complex_: bool) -> list[np.ndarray]:
    """The ``K`` angular masks ``A_k`` (or ``2A_k`` on a half-plane) on the angles ``theta``."""
    n = orientations - 1
    alpha = math.sqrt(4.0**n / (orientations * math.comb(2 * n, n)))
    masks = []
    for k in range(orientations):
        delta = theta - np.pi * k / orientations
        mask = alpha * np.cos(delta) ** n
        if complex_:
            wrapped = np.mod(delta + np.pi, 2 * np.pi) - np.pi
            mask = np.where(np.abs(wrapped) < np.pi / 2, 2.0 * mask, 0.0)
        masks.append(mask)
    return masks


class FrequencySteerableModel:
    """The masks of a frequency-domain steerable pyramid for one image shape, built once.

    Build it for a shape and reuse it for every image of that shape (a video's frames):
    :meth:`decompose` and :meth:`reconstruct` then only run FFTs and products.

    Parameters
    ----------
    shape : sequence of int
        ``(h, w)``, or ``(h, w, c)`` (the channels do not change the masks).
    levels : int, optional
        Levels of oriented bands, ``0 … max_frequency_levels(shape)`` (the default).
    orientations : int
        ``K``, 1 … 16 (2 … 16 for a complex pyramid); order ``K − 1``.
    complex : bool
        Analytic (one-sided, complex) bands instead of real ones.
    twidth : float
        Width of the radial transitions, in octaves (> 0).

    Attributes
    ----------
    shape : tuple of int
        ``(h, w)``.
    levels, orientations, complex, twidth
    level_shapes : list of tuple
        ``(h_ℓ, w_ℓ)`` for ``ℓ = 0 … levels`` (the last is the residual's).

    Raises
    ------
    ValueError
        Naming the argument that is out of range.
    """

    def __init__(
        self,
        shape: Sequence[int],
        levels: int | None = None,
        orientations: int = 4,
        *,
        complex: bool = False,
        twidth: float = 1.0,
    ):
        if len(shape) not in (2, 3) or not all(
            isinstance(n, (int, np.integer)) and n > 0 for n in shape
        ):
            raise ValueError(f"shape must be (h, w) or (h, w, c) of positive sides, got {shape!r}")
        if not isinstance(complex, (bool, np.bool_)):
            raise ValueError(f"complex must be True or False, got {complex!r}")
        self.shape = (int(shape[0]), int(shape[1]))
        self.complex = bool(complex)
        self.orientations = _check_orientations(orientations, self.complex)
        self.twidth = _check_twidth(twidth)
        self.levels = _check_levels(levels, self.shape)
        self.level_shapes = level_shapes(self.shape, self.levels)
        #: ``c = (−i)^n``, the phase that makes the real pyramid's bands real
        self.phase_factor = (-1j) ** (self.orientations - 1)
        self._build()
        self._cast: dict[np.dtype, dict[str, object]] = {}
        self._blocks: dict[tuple[int, bool], list[tuple[tuple[slice, ...], ...]]] = {}

    def _build(self) -> None:
        h, w = self.shape
        ky, kx = _frequencies(h), _frequencies(w)
        u = (2.0 * kx / w)[None, :]  # ρ = 1 at Nyquist along either axis
        v = (-2.0 * ky / h)[:, None]  # y up: minus the row frequency
        rho = np.hypot(u, v)
        theta = np.arctan2(v, u) + np.zeros_like(rho)
        with np.errstate(divide="ignore"):
            log_rho = np.log2(rho)  # −inf at DC: every high-pass is 0 there, every low-pass 1
        self.highpass0, self.lowpass0 = _raised_cosine(log_rho, 0.0, self.twidth)
        self.band_masks: list[list[np.ndarray]] = []  # B_ℓ·A_k (real: c applied separately)
        self.real_band_masks: list[list[np.ndarray]] = []  # B_ℓ·A_k of the real pyramid
        self.lowpass: list[np.ndarray] = []  # L_ℓ, on level ℓ + 1's grid
        self.crops: list[tuple[np.ndarray, np.ndarray]] = []
        rows, cols = np.arange(h), np.arange(w)
        for level in range(self.levels):
            (lh, lw), (nh, nw) = self.level_shapes[level], self.level_shapes[level + 1]
            grid = np.ix_(rows, cols)
            band, low = _raised_cosine(log_rho[grid], -level - 1.0, self.twidth)
            angles = theta[grid]
            real = [band * a for a in _angular(angles, self.orientations, False)]
            self.real_band_masks.append(real)
            self.band_masks.append(
                [band * a for a in _angular(angles, self.orientations, True)]
                if self.complex
                else real
            )
            crop = (_crop_indices(lh, nh), _crop_indices(lw, nw))
            self.crops.append(crop)
            self.lowpass.append(low[np.ix_(*crop)])
            rows, cols = rows[crop[0]], cols[crop[1]]

    def _masks(self, dtype: np.dtype) -> dict[str, object]:
        """The masks for images of ``dtype``, in its complex dtype (complex64 for float32).

        Every mask multiplies a spectrum, and numpy's complex × complex product is faster
        than a complex × real one (which casts the real operand on the fly).

        ``half_*`` are the masks on the half spectrum of a real FFT (columns ``0 … w//2`` of
        each level): where a side is even, its last column there is ``+w/2`` where the full
        grid holds ``−w/2``; the masks that differ at the two (the oriented ones) meet only
        zeros there, since the low-pass masks vanish on every level's Nyquist lines.
        """
        dtype = np.dtype(dtype)
        if dtype not in self._cast:
            complex_dtype = np.result_type(dtype, np.complex64)

            def half(mask: np.ndarray) -> np.ndarray:
                return np.ascontiguousarray(mask[:, : mask.shape[1] // 2 + 1], complex_dtype)

            c = self.phase_factor
            # each level's K oriented masks stacked, shape (K, h_ℓ, w_ℓ): one batched FFT
            # call per level instead of K; c·B·A (analysis) and its conjugate (synthesis,
            # B·A being real): one product per band, none for c
            phased = [np.stack([half(c * m) for m in level]) for level in self.real_band_masks]
            cast = {
                "half_highpass0": half(self.highpass0),
                "half_lowpass0": half(self.lowpass0),
                "half_lowpass": [half(m) for m in self.lowpass],
                "half_phased_bands": phased,
                "half_conj_phased_bands": [np.conj(level) for level in phased],
            }
            if self.complex:  # the one-sided bands need whole spectra
                cast["phased_bands"] = [
                    (c * np.stack(level)).astype(complex_dtype) for level in self.band_masks
                ]
                cast["lowpass"] = [m.astype(complex_dtype) for m in self.lowpass]
            self._cast[dtype] = cast
        return self._cast[dtype]

    # ------------------------------------------------------------------ the fast path

    def _check_image(self, image: ArrayLike, lead: int = 0) -> np.ndarray:
        if lead:  # frames (t, h, w[, c]): checked as one tall image (t·h, w[, c])
            array = np.asarray(image)
            if array.ndim not in (3, 4) or array.shape[0] == 0:
                raise ValueError(f"frames must have shape (t, h, w[, c]), got {array.shape}")
            tall = as_float_image(array.reshape(-1, *array.shape[2:]), "frames")
            x = tall.reshape(array.shape)
        else:
            x = as_float_image(image)
        if x.shape[lead : lead + 2] != self.shape:
            if lead:
                h, w = self.shape
                raise ValueError(f"frames must have shape (t, {h}, {w}[, c]), got {x.shape}")
            raise ValueError(f"image must have shape {self.shape}[+ (c,)], got {x.shape}")
        return x

    def _half_crop(self, level: int) -> tuple[np.ndarray, np.ndarray]:
        """The crop from level ``level`` to the next on the half spectra of real FFTs."""
        return self.crops[level][0], np.arange(self.level_shapes[level + 1][1] // 2 + 1)

    def _crop_blocks(self, level: int, half: bool) -> list[tuple[tuple[slice, ...], ...]]:
        """The crop from level ``level`` to the next as ``(into, from)`` pairs of 2-D slices.

        ``half``: on the half spectra of real FFTs. Worked out once per model.
        """
        key = (level, half)
        if key not in self._blocks:
            rows, cols = self._half_crop(level) if half else self.crops[level]
            self._blocks[key] = [
                ((into_r, into_c), (from_r, from_c))
                for into_r, from_r in _runs(rows)
                for into_c, from_c in _runs(cols)
            ]
        return self._blocks[key]

    def _crop_times(
        self, spectrum: np.ndarray, level: int, low: np.ndarray, lead: int, half: bool
    ) -> np.ndarray:
        """``spectrum`` cropped to level ``level + 1`` and multiplied by ``low`` (its mask).

        The same as ``spectrum[ix_(crop)] * low`` in one pass per block, without the
        gather's temporary. ``half``: the half spectra of real FFTs.
        """
        rows, cols = self.level_shapes[level + 1]
        cols = cols // 2 + 1 if half else cols
        keep, tail = (slice(None),) * lead, (None,) * (spectrum.ndim - lead - 2)
        shape = (*spectrum.shape[:lead], rows, cols, *spectrum.shape[lead + 2 :])
        out = np.empty(shape, np.result_type(spectrum, low))
        for into, source in self._crop_blocks(level, half):
            np.multiply(
                spectrum[(*keep, *source)],
                low[into][(*(None,) * lead, ..., *tail)],
                out=out[(*keep, *into)],
            )
        return out

    def analyse(
        self, image: ArrayLike, *, stacked: bool = False, threads: int | None = None
    ) -> tuple[np.ndarray, list, np.ndarray]:
        """``(highpass, bands, residual)`` of an image of this model's shape.

        Real FFTs throughout for the real pyramid; the complex one needs the whole spectrum
        for its one-sided bands. The ``K`` bands of a level come from one batched FFT call.

        Parameters
        ----------
        image : array_like, shape (h, w) or (h, w, c)
            Float32 stays float32 (complex64 bands if complex); integers are scaled as by
            :func:`pyramids.arrays.as_float_image`.
        stacked : bool
            Return each level's bands as one array of shape ``(K, h_ℓ, w_ℓ[, c])`` instead of
            a list of ``K`` arrays (the list's arrays are views of that one).
        threads : int, optional
            FFT workers (:func:`pyramids.parallel.resolve_threads`).

        Returns
        -------
        highpass : ndarray, shape (h, w[, c]), the image's float dtype
        bands : list of lists of ndarray, or list of ndarray if ``stacked``
            ``bands[ℓ][k]`` of shape ``level_shapes[ℓ] (+ (c,))``, real or complex.
        residual : ndarray, shape ``level_shapes[-1] (+ (c,))``
        """
        x = self._check_image(image)
        return self._analyse(x, 0, stacked, resolve_threads(threads))

    def analyse_frames(
        self, frames: ArrayLike, *, stacked: bool = False, threads: int | None = None
    ) -> tuple[np.ndarray, list, np.ndarray]:
        """:meth:`analyse` of a stack of frames in one call: batched FFTs over the stack.

        The masks are built once (by the model) and broadcast over the frames, and every FFT
        runs over the whole stack, so the per-call overheads are paid once: small frames cost
        less (64 frames of 128×128: 1.2–2.3× cheaper per frame than a loop of
        :meth:`analyse`), large ones about the same (480×640: within 15%, the work being
        bound by memory), ``benchmarks/bench_steerable_freq.py --cases frames``. The result
        equals :meth:`analyse` frame by frame.

        Parameters
        ----------
        frames : array_like, shape (t, h, w) or (t, h, w, c)
            Frames of this model's shape; dtype handling as in :meth:`analyse`.
        stacked : bool
            Each level as one array ``(K, t, h_ℓ, w_ℓ[, c])`` instead of ``K`` arrays.
        threads : int, optional
            FFT workers.

        Returns
        -------
        highpass : ndarray, shape (t, h, w[, c])
        bands : list of lists of ndarray, shape (t, h_ℓ, w_ℓ[, c]) each (or stacked)
        residual : ndarray, shape (t, *level_shapes[-1][, c])

        Examples
        --------
        >>> model = FrequencySteerableModel((32, 24), levels=2, complex=True)
        >>> frames = np.random.default_rng(0).random((5, 32, 24)).astype(np.float32)
        >>> hp, bands, res = model.analyse_frames(frames)
        >>> bands[1][3].shape, bands[1][3].dtype
        ((5, 16, 12), dtype('complex64'))
        >>> bool(np.array_equal(bands[1][3][2], model.analyse(frames[2])[1][1][3]))
        True
        """
        x = self._check_image(frames, lead=1)
        return self._analyse(x, 1, stacked, resolve_threads(threads))

    def _analyse(
        self, x: np.ndarray, lead: int, stacked: bool, workers: int
    ) -> tuple[np.ndarray, list, np.ndarray]:
        """The analysis of ``x``, whose image axes follow ``lead`` batch axes (0 or 1)."""
        masks = self._masks(x.dtype)
        tail = (None,) * (x.ndim - lead - 2)  # masks broadcast over channels …
        head = (None,) * lead  # … and over frames

        def fit(mask: np.ndarray) -> np.ndarray:  # one (h, w) mask against x's axes
            return mask[(*head, ..., *tail)]

        def fit_stack(stack: np.ndarray) -> np.ndarray:  # (K, h, w) → (K, [1,] h, w[, 1])
            return stack[(slice(None), *head, ..., *tail)]

        fft = {"axes": (lead, lead + 1), "norm": "ortho"}
        band_fft = {**fft, "axes": (lead + 1, lead + 2)}  # behind the stack's K axis

        def real(spectrum: np.ndarray, level: int, options=fft) -> np.ndarray:
            return scipy.fft.irfft2(
                spectrum, s=self.level_shapes[level], workers=_split(spectrum, workers), **options
            )

        half = scipy.fft.rfft2(x, workers=_split(x, workers), **fft)
        highpass = real(half * fit(masks["half_highpass0"]), 0)
        if self.complex:
            current = self._whole_spectrum(half, lead, fit(masks["half_lowpass0"]))
        else:
            current = half * fit(masks["half_lowpass0"])
        bands = []
        for level in range(self.levels):
            if self.complex:
                phased = fit_stack(masks["phased_bands"][level])
                row = np.multiply(current[None], phased)
                # in place: the products become the bands, no second K-band buffer
                row = scipy.fft.ifft2(
                    row, overwrite_x=True, workers=_split(row, workers), **band_fft
                )
                low = masks["lowpass"][level]
            else:
                row = real(current[None] * fit_stack(masks["half_phased_bands"][level]), level,
                           band_fft)  # fmt: skip
                low = masks["half_lowpass"][level]
            bands.append(row if stacked else list(row))
            current = self._crop_times(current, level, low, lead, not self.complex)
        if self.complex:
            residual = scipy.fft.ifft2(current, workers=_split(current, workers), **fft).real
        else:
            residual = real(current, self.levels)
        return highpass, bands, residual

    def _whole_spectrum(
        self, half: np.ndarray, lead: int, mask: np.ndarray | None = None
    ) -> np.ndarray:
        """The whole DFT of a real image from its real FFT: ``X[−k] = conj X[k]``.

        Cheaper than a complex FFT of the image (copies instead of a transform). With
        ``mask`` (on the half spectrum, even in ``k`` like the radial masks), the whole DFT
        times that mask, in the same passes.
        """
        h, w = self.shape
        whole = np.empty((*half.shape[:lead], h, w, *half.shape[lead + 2 :]), half.dtype)
        keep = (slice(None),) * lead
        left = whole[(*keep, slice(None), slice(0, w // 2 + 1))]
        if mask is None:
            left[...] = half
        else:
            np.multiply(half, mask, out=left)
        # column w − j holds conj of column j, row −k_y mod h: rows 0, h−1 … 1 of the left part
        right, source = slice(w // 2 + 1, None), slice(w - w // 2 - 1, 0, -1)
        np.conjugate(left[(*keep, slice(0, 1), source)], out=whole[(*keep, slice(0, 1), right)])
        np.conjugate(
            left[(*keep, slice(h - 1, 0, -1), source)], out=whole[(*keep, slice(1, None), right)]
        )
        return whole

    def synthesise(
        self,
        highpass: np.ndarray,
        bands: Sequence,
        residual: np.ndarray,
        *,
        threads: int | None = None,
    ) -> np.ndarray:
        """The image of coefficients (the adjoint of :meth:`analyse`; its inverse unedited).

        Complex bands contribute their real parts (the real pyramid's bands). Real FFTs
        throughout.

        Parameters
        ----------
        highpass, residual : ndarray
            As :meth:`analyse` returns them.
        bands : list of lists of ndarray, or list of ndarray
            ``bands[ℓ][k]``, or each level stacked ``(K, h_ℓ, w_ℓ[, c])``.
        threads : int, optional
            FFT workers.

        Returns
        -------
        ndarray, shape (h, w[, c]), the dtype of ``highpass``
        """
        return self._synthesise(highpass, bands, residual, 0, resolve_threads(threads))

    def synthesise_frames(
        self,
        highpass: np.ndarray,
        bands: Sequence,
        residual: np.ndarray,
        *,
        threads: int | None = None,
    ) -> np.ndarray:
        """:meth:`synthesise` of a stack of frames in one call (see :meth:`analyse_frames`).

        Returns
        -------
        ndarray, shape (t, h, w[, c]), the dtype of ``highpass``
        """
        return self._synthesise(highpass, bands, residual, 1, resolve_threads(threads))

    def _synthesise(
        self, highpass: np.ndarray, bands: Sequence, residual: np.ndarray, lead: int, workers: int
    ) -> np.ndarray:
        dtype = highpass.dtype
        masks = self._masks(dtype)
        tail = (None,) * (highpass.ndim - lead - 2)
        head = (None,) * lead
        fft = {"axes": (lead, lead + 1), "norm": "ortho"}
        band_fft = {**fft, "axes": (lead + 1, lead + 2)}
        keep = (slice(None),) * lead
        current = scipy.fft.rfft2(residual, workers=_split(residual, workers), **fft)
        for level in reversed(range(self.levels)):
            row = bands[level]
            stack = row.real if isinstance(row, np.ndarray) else np.stack([b.real for b in row])
            spectra = scipy.fft.rfft2(
                stack, overwrite_x=True, workers=_split(stack, workers), **band_fft
            )
            spectra *= masks["half_conj_phased_bands"][level][(slice(None), *head, ..., *tail)]
            up = spectra.sum(axis=0)
            low = masks["half_lowpass"][level]
            for into, source in self._crop_blocks(level, True):  # the crop's adjoint
                up[(*keep, *source)] += current[(*keep, *into)] * low[into][(*head, ..., *tail)]
            current = up
        spectrum = scipy.fft.rfft2(highpass, workers=_split(highpass, workers), **fft)
        spectrum *= masks["half_highpass0"][(*head, ..., *tail)]
        spectrum += current * masks["half_lowpass0"][(*head, ..., *tail)]
        image = scipy.fft.irfft2(spectrum, s=self.shape, workers=_split(spectrum, workers), **fft)
        return image.astype(dtype, copy=False)

    def decompose(
        self, image: ArrayLike, *, threads: int | None = None
    ) -> FrequencySteerablePyramid:
        """The pyramid of ``image`` (see :meth:`analyse`), holding this model for reuse."""
        x = self._check_image(image)
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is answered below
            highpass, rows, residual = self._analyse(x, 0, True, resolve_threads(threads))
        # The constructor's checks, less those the analysis guarantees (dtypes, shapes): only
        # finiteness, which a finite image can lose to overflow. Every value an FFT computes
        # is a sum of at most N inputs' magnitudes, so the forward transform's values are at
        # most N·m (m = max |x|), the (ortho) spectrum's N·m/√N, masks at most 2 keep that,
        # and the inverse transforms' sums of N of them stay below 2·N^1.5·m; with a factor
        # 2 for rounding, an image under that bound cannot overflow, and only above it are
        # the coefficients tested (a dot product per level: docs/design.md §9).
        n = self.shape[0] * self.shape[1]
        limit = float(np.finfo(x.dtype).max) / (4.0 * n**1.5)
        if not (x.size and float(np.abs(x).max()) < limit):
            for name, array in [("highpass", highpass), ("residual", residual)] + [
                (f"bands[{level}]", row) for level, row in enumerate(rows)
            ]:
                if not all_finite(_real_view(array)):
                    raise ValueError(f"{name} contains NaN or infinite values (an overflow)")
        pyramid = FrequencySteerablePyramid.__new__(FrequencySteerablePyramid)
        pyramid.complex, pyramid.twidth = self.complex, self.twidth
        pyramid.highpass, pyramid.residual = highpass, residual
        pyramid.bands = [list(row) for row in rows]
        pyramid._model = self
        return pyramid

    # ------------------------------------------------------------------ the matrices

    def analysis_matrix(self) -> sp.csr_array:
        """The analysis in the Fourier basis, as a sparse matrix (at most one entry per row).

        It maps the unitary DFT of an image (``scipy.fft.fft2(x, norm='ortho')``, unshifted,
        raveled row-major) to the unitary DFTs of the coefficients, stacked in the order
        highpass, ``bands[0][0] … bands[0][K−1]``, …, residual. Each block is a diagonal mask
        times the crops of the levels above it. For small shapes (it is ``O(N·K·levels)``).

        Returns
        -------
        scipy.sparse.csr_array, shape (N_0 + K·Σ_ℓ N_ℓ + N_L, N_0), complex128
        """
        n0 = self.shape[0] * self.shape[1]
        # the positions in the full image of each level's frequencies, and their gain so far
        where = np.arange(n0).reshape(self.shape)
        gain = self.lowpass0.astype(np.complex128)
        blocks = [sp.diags_array(self.highpass0.ravel().astype(np.complex128))]
        for level in range(self.levels):
            for mask in self.band_masks[level]:
                blocks.append(_selection(where, self.phase_factor * mask * gain, n0))
            crop = np.ix_(*self.crops[level])
            where, gain = where[crop], gain[crop] * self.lowpass[level]
        blocks.append(_selection(where, gain, n0))
        return sp.vstack(blocks, format="csr")


def _real_view(array: np.ndarray) -> np.ndarray:
    """A contiguous complex array's values as real ones (twice as many), without a copy."""
    if np.iscomplexobj(array) and array.flags.c_contiguous:
        return array.view(array.real.dtype)
    return array


def _selection(where: np.ndarray, values: np.ndarray, n0: int) -> sp.csr_array:
    """Rows that take ``values[i] · x[where[i]]``."""
    n = where.size
    return sp.csr_array(
        (values.ravel(), (np.arange(n), where.ravel())), shape=(n, n0), dtype=np.complex128
    )


def frequency_analysis_matrix(
    shape: Sequence[int],
    levels: int | None = None,
    orientations: int = 4,
    *,
    complex: bool = False,
    twidth: float = 1.0,
) -> sp.csr_array:
    """The analysis operator of a frequency steerable pyramid in the Fourier basis.

    See :meth:`FrequencySteerableModel.analysis_matrix`; the arguments are the model's.

    Examples
    --------
    >>> a = frequency_analysis_matrix((16, 12), levels=1, orientations=2)
    >>> a.shape, bool(abs(a.T.conj() @ a - sp.eye_array(192)).max() < 1e-12)
    ((624, 192), True)
    """
    model = FrequencySteerableModel(shape, levels, orientations, complex=complex, twidth=twidth)
    return model.analysis_matrix()


# --------------------------------------------------------------------------- the pyramid


class FrequencySteerablePyramid(OrientedPyramid):
    """A frequency-domain steerable pyramid, real or complex (module docstring).

    Build one with :func:`steerable_pyramid_freq` (or :meth:`FrequencySteerableModel.
    decompose`), or from coefficients, edited ones too, with the constructor.

    Parameters
    ----------
    highpass : ndarray, shape (h, w) or (h, w, c), float32 or float64
    bands : sequence of sequences of ndarray
        ``bands[ℓ][k]``, of shape ``(ceil(h/2^ℓ), ceil(w/2^ℓ)[, c])``; real of the
        highpass's dtype, or complex of its precision (complex64 with float32) if
        ``complex``.
    residual : ndarray
        Low-pass residual, of the shape of the level below the last.
    complex : bool
        Whether the bands are analytic (complex).
    twidth : float
        Radial transition width (octaves) the coefficients were computed with.

    Attributes
    ----------
    highpass, bands, residual
    complex, twidth

    Notes
    -----
    One kind, ``'steerable_freq'``, for both; the file's meta records ``complex`` and
    ``twidth``. ``dtype`` is the image's (float32 or float64) for both.
    """

    kind = "steerable_freq"
    coefficient_dtypes = (np.float32, np.float64, np.complex64, np.complex128)

    def __init__(
        self,
        highpass: ArrayLike,
        bands: Sequence[Sequence[ArrayLike]],
        residual: ArrayLike,
        *,
        complex: bool = False,
        twidth: float = 1.0,
    ):
        if not isinstance(complex, (bool, np.bool_)):
            raise ValueError(f"complex must be True or False, got {complex!r}")
        self.complex = bool(complex)
        self.twidth = _check_twidth(twidth)
        hp = as_float_image(highpass, "highpass")
        dtype = hp.dtype
        band_dtype = np.result_type(dtype, np.complex64) if self.complex else dtype
        levels = _check_levels(len(bands), hp.shape[:2])
        shapes = level_shapes(hp.shape[:2], levels)
        orientations = len(bands[0]) if levels else None
        tail = hp.shape[2:]
        checked = []
        for level, level_bands in enumerate(bands):
            if len(level_bands) != orientations:
                raise ValueError(
                    f"bands[{level}] must hold {orientations} orientations like bands[0], "
                    f"got {len(level_bands)}"
                )
            row = []
            for k, band in enumerate(level_bands):
                array = np.asarray(band)
                if array.dtype != band_dtype:
                    raise ValueError(
                        f"bands[{level}][{k}] must be {band_dtype} (the highpass is {dtype}, "
                        f"complex={self.complex}), got {array.dtype}"
                    )
                if array.shape != (*shapes[level], *tail):
                    raise ValueError(
                        f"bands[{level}][{k}] must have shape {(*shapes[level], *tail)}, "
                        f"got {array.shape}"
                    )
                if not np.isfinite(array).all():
                    raise ValueError(f"bands[{level}][{k}] contains NaN or infinite values")
                row.append(array)
            checked.append(row)
        if orientations is not None:
            _check_orientations(orientations, self.complex)
        res = as_float_image(residual, "residual")
        if res.shape != (*shapes[-1], *tail) or res.dtype != dtype:
            raise ValueError(
                f"residual must be {dtype} of shape {(*shapes[-1], *tail)}, "
                f"got {res.dtype} {res.shape}"
            )
        self.highpass = hp
        self.bands = checked
        self.residual = res
        self._model: FrequencySteerableModel | None = None

    # ------------------------------------------------------------------ properties

    @property
    def levels(self) -> int:
        """Number of levels of oriented bands."""
        return len(self.bands)

    @property
    def orientations(self) -> int | None:
        """Number of oriented bands per level (``None`` with no levels)."""
        return len(self.bands[0]) if self.bands else None

    def model(self) -> FrequencySteerableModel:
        """The masks of this pyramid's shape and settings (built once, then kept)."""
        if self._model is None:
            self._model = FrequencySteerableModel(
                self.shape,
                self.levels,
                self.orientations or 4,  # any count serves a pyramid of residuals only
                complex=self.complex and self.levels > 0,
                twidth=self.twidth,
            )
        return self._model

    # ------------------------------------------------------------------ maths

    def reconstruct(self, *, threads: int | None = None) -> np.ndarray:
        """The image: the adjoint of the analysis, its exact inverse (a tight frame).

        Complex bands contribute their real parts. Edited coefficients give the image whose
        coefficients are closest to them in the least-squares sense (for real bands).

        Parameters
        ----------
        threads : int, optional
            FFT workers.

        Returns
        -------
        ndarray, of :attr:`shape` and :attr:`dtype`
        """
        return self.model().synthesise(self.highpass, self.bands, self.residual, threads=threads)

    def _check_level(self, level: int) -> int:
        level = _check_int(level, "level")
        if not -self.levels <= level < self.levels:
            raise ValueError(f"level must be in 0 … {self.levels - 1}, got {level}")
        return level

    def steer(self, level: int, theta: float) -> np.ndarray:
        """The real pyramid's band of ``level`` steered to the angle ``theta``.

        ``Σ_k w_k(θ) b_k`` with the weights of :func:`pyramids.steering_weights` for order
        ``K − 1`` and the basis angles ``πk/K``: the band an angular mask
        ``α cos(θ' − theta)^(K−1)`` would give.

        Parameters
        ----------
        level : int
        theta : float
            Radians, counter-clockwise from the x axis as displayed.

        Returns
        -------
        ndarray, the level's shape, :attr:`dtype`

        Raises
        ------
        ValueError
            For a complex pyramid (its half-plane masks do not steer), or a bad level.
        """
        if self.complex:
            raise ValueError("steer needs a real pyramid (complex=False); its masks steer")
        level = self._check_level(level)
        weights = steering_weights(float(theta), self.orientations - 1)
        out = np.zeros_like(self.bands[level][0])
        for w, band in zip(weights, self.bands[level]):
            out += band.dtype.type(w) * band
        return out

    def amplitude(self, level: int) -> np.ndarray:
        """Local amplitude ``|c|`` of the complex bands of ``level``.

        Returns
        -------
        ndarray, shape (K, h_ℓ, w_ℓ[, c]), :attr:`dtype`
        """
        return np.abs(self._complex_level(level))

    def phase(self, level: int) -> np.ndarray:
        """Local phase ``arg c`` in ``(−π, π]`` of the complex bands of ``level``.

        Returns
        -------
        ndarray, shape (K, h_ℓ, w_ℓ[, c]), :attr:`dtype`
        """
        return np.angle(self._complex_level(level))

    def _complex_level(self, level: int) -> np.ndarray:
        if not self.complex:
            raise ValueError("amplitude and phase need a complex pyramid (complex=True)")
        return np.stack(self.bands[self._check_level(level)])

    # ------------------------------------------------------------------ pictures, files

    def _settings(self) -> dict[str, object]:
        return {
            "orientations": self.orientations or 0,
            "complex": self.complex,
            "twidth": self.twidth,
        }

    @classmethod
    def _array_names(cls, meta) -> list[str]:
        orientations = meta_value(meta, "orientations", int)
        if meta["levels"] and not 1 <= orientations <= MAX_ORIENTATIONS:
            raise ValueError(f"orientations must be in 1 … {MAX_ORIENTATIONS}, got {orientations}")
        bands = [
            f"band_{level}_{k}" for level in range(meta["levels"]) for k in range(orientations)
        ]
        return ["highpass", *bands, "residual"]

    @classmethod
    def _from_parts(cls, arrays, meta) -> FrequencySteerablePyramid:
        orientations = meta["orientations"]
        complex_ = meta.get("complex")
        if not isinstance(complex_, bool):  # meta_value's types exclude booleans
            raise PyramidFileError(f"meta's 'complex' must be true or false, got {complex_!r:.80}")
        bands = [
            [arrays[f"band_{level}_{k}"] for k in range(orientations)]
            for level in range(meta["levels"])
        ]
        return cls(
            arrays["highpass"],
            bands,
            arrays["residual"],
            complex=complex_,
            twidth=meta_value(meta, "twidth", float),
        )


def steerable_pyramid_freq(
    image: ArrayLike,
    levels: int | None = None,
    orientations: int = 4,
    *,
    complex: bool = False,
    twidth: float = 1.0,
    threads: int | None = None,
) -> FrequencySteerablePyramid:
    """The frequency-domain (Portilla–Simoncelli) steerable pyramid of an image.

    A tight frame on periodic borders: :meth:`~FrequencySteerablePyramid.reconstruct`
    inverts it to rounding, for every size. To decompose many images of one shape, build a
    :class:`FrequencySteerableModel` once and call its ``decompose``.

    Parameters
    ----------
    image : array_like, shape (h, w) or (h, w, c)
        Float32 stays float32 (complex64 bands if ``complex``), float64 stays float64;
        integer images are scaled to [0, 1]. Colour channels are decomposed independently.
    levels : int, optional
        Levels of oriented bands, at most ``floor(log2(min(h, w))) − 2`` (the default).
    orientations : int
        ``K`` oriented bands per level, 1 … 16 (2 … 16 if ``complex``); pyrtools' ``order``
        is ``K − 1``.
    complex : bool
        Analytic (one-sided) bands, whose real parts are the real pyramid's bands.
    twidth : float
        Width of the radial raised-cosine transitions, in octaves (default 1).
    threads : int, optional
        FFT workers (:func:`pyramids.parallel.resolve_threads`).

    Returns
    -------
    FrequencySteerablePyramid

    Raises
    ------
    ValueError
        Naming the argument that is out of range (levels, orientations, twidth, complex).
    TypeError
        If the image is not a real numeric array.

    Examples
    --------
    >>> x = np.random.default_rng(0).random((48, 40)).astype(np.float32)
    >>> pyr = steerable_pyramid_freq(x, levels=2, orientations=4, complex=True)
    >>> pyr.bands[1][0].shape, pyr.bands[1][0].dtype, pyr.residual.shape
    ((24, 20), dtype('complex64'), (12, 10))
    >>> bool(np.abs(pyr.reconstruct() - x).max() < 1e-5)
    True
    """
    x = as_float_image(image)
    model = FrequencySteerableModel(x.shape, levels, orientations, complex=complex, twidth=twidth)
    return model.decompose(x, threads=threads)
