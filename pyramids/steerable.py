"""The steerable pyramid of Simoncelli & Freeman (1995) on sparse operators (docs/design.md §4).

    x ──H0──> highpass
    x ──L0──> l ──B_0 … B_K──> oriented bands of level 0
                └──L1, ↓2──> next level, same recursion … low-pass residual

Every stage is a linear operator, a 2-D correlation with the boundary mode folded in
(:func:`pyramids.operators.fold_indices`, docs/design.md §1), ``↓2`` a selection of the even rows
and columns. Stacked, the stages form the analysis
operator ``A`` (:func:`analysis_matrix`); ``A @ x.ravel()`` equals
:meth:`SteerablePyramid.coefficients`. The filters are the published ``sp0`` … ``sp5`` sets
(:mod:`pyramids.steerable_filters`).

Each 2-D filter ``f`` (an ``s × s`` array) is split by its SVD into separable terms,
``f ≈ Σ_t u_t v_tᵀ``, keeping the fewest terms whose dropped singular values have a norm of
at most ``rank_tol · ‖f‖_F``. Because boundary folding acts on each axis separately, the 2-D
folded matrix of ``u vᵀ`` is exactly ``kron(U, V)`` with ``U``, ``V`` the folded 1-D matrices
of ``u`` and ``v`` (:func:`pyramids.operators.correlation_matrix`): a stage is the separable
operator ``Σ_t U_t X V_tᵀ`` (:class:`pyramids.engine.Separable`). The default
``rank_tol = 1e-8`` keeps every filter's full numerical rank (the singular values it drops
are at the 1e-17 level), so the separable form *is* the operator, not an approximation;
:func:`stage_matrix` builds the explicit 2-D matrix tap by tap, the reference it is tested
against. The oriented bands are first rewritten in the basis of "angular monomials" ``D_a``
(``B_k = Σ_a C(K, a) cos^a θ_k sin^(K-a) θ_k D_a``): for ``sp3`` that needs 16 separable
terms instead of 24, for ``sp5`` 18 instead of 30.

Two engines apply the stages (:mod:`pyramids.engine`): ``'separable'`` (default), a
stage's terms together, strip by strip, through dense band tiles and threads; ``'matrix'``,
the reference, one sparse product per axis and term. Both handle grey ``(h, w)`` and colour
``(h, w, c)`` images, float32 and float64 (float32 stays float32), and the five boundary
modes of :data:`pyramids.operators.BOUNDARIES`.

The engines agree to rounding. A coefficient (or, in a synthesis, a pixel) is a sum of
chains of stages ``S_m ⋯ S_1``; computed in floating point it errs by at most
``γ_N · (|S_m| ⋯ |S_1| |x|)`` elementwise, ``γ_N = N·u / (1 - N·u)`` with ``u`` the unit
roundoff and ``N`` the products and additions on its longest path (a stage costs the
separable engine ``n_V + R·n_U``: its width pass, then ``R`` interleaved height passes; the
matrix engine ``n_U + n_V + R``; the bands' mixing with the monomial matrix ``K + 1`` more).
The two engines therefore differ by at most the sum of their two bounds;
tests/steerable_rounding.py computes it.

Reconstruction (:meth:`SteerablePyramid.reconstruct`) is one of three:

``'adjoint'``
    ``Aᵀ c``: the published filter sets are approximately self-inverting, ``AᵀA ≈ I``, to
    each set's ``energy_tolerance``. That holds everywhere only with ``boundary='periodic'``
    (camera at 512², sp3, 5 levels: error 0.024 at most, RMS 0.005). With ``'reflect'`` the
    transpose of the mirror fold counts the mirrored samples twice, so it errs near the
    borders, and at coarse levels, whose borders are wide, well inside too (1.5 at most, 0.37
    inside a 32-pixel margin, RMS 0.18).
``'mirror'`` (default)
    The same synthesis filters applied to the coefficients extended as the analysis extended
    the image: zeros between the samples of a downsampled level, then a mirror in which each
    angular monomial band keeps its symmetry (even or odd about either axis). It costs about
    what the adjoint costs; with ``'reflect'`` its error is close to the filter set's,
    borders included, but for a border term where a level has an even side (0.07 at most,
    0.024 inside, RMS 0.006). With the other boundaries it is the adjoint.
``'exact'``
    The least-squares inverse, by conjugate gradients on ``AᵀA`` started from the mirror
    synthesis (``tol=1e-7``: 1.9e-7 relative).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import lru_cache
from math import comb

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike

from .arrays import as_float_image, float_dtype, shape_hwc
from .engine import ENGINES as _ENGINES
from .engine import Separable, get_engine, mix
from .operators import check_boundary, correlation_matrix, correlation_matrix_2d, per_channel
from .parallel import blas_limited, resolve_threads
from .pyramid import OrientedPyramid, level_shapes, meta_value
from .steerable_filters import SteerableFilterSet, get_filter_set, steering_weights

__all__ = [
    "DEFAULT_RANK_TOL",
    "ENGINES",
    "SteerablePyramid",
    "analysis_matrix",
    "max_steerable_levels",
    "separable_terms",
    "stage_matrix",
    "steer",
    "steerable_pyramid",
]

#: The engines that apply the stages (:mod:`pyramids.engine`).
ENGINES: tuple[str, ...] = tuple(_ENGINES)
#: Relative Frobenius tolerance of the separable (SVD) split; keeps every filter's full rank.
DEFAULT_RANK_TOL = 1e-8


# --------------------------------------------------------------------------- validation


def max_steerable_levels(
    shape: Sequence[int],
    filters: str | SteerableFilterSet | None = None,
    *,
    order: int | None = None,
    orientations: int | None = None,
) -> int:
    """Largest number of levels for an image of ``shape``.

    Level ``ℓ`` filters an image of side ``ceil(n / 2^ℓ)``; it needs that side to be at least
    the filters' support (:attr:`SteerableFilterSet.support`, 17 for ``sp3``).

    Parameters
    ----------
    shape : (h, w) or (h, w, c)
        Image shape.
    filters, order, orientations
        Filter set selection, as for :func:`pyramids.steerable_filters.get_filter_set`.

    Returns
    -------
    int
        At least 1.

    Raises
    ------
    ValueError
        If the image is smaller than the support of the filters.

    Examples
    --------
    >>> max_steerable_levels((512, 512)), max_steerable_levels((512, 300), "sp5")
    (5, 6)
    """
    fs = get_filter_set(filters, order=order, orientations=orientations)
    if len(shape) not in (2, 3):
        raise ValueError(f"shape must be (h, w) or (h, w, c), got {tuple(shape)}")
    side = min(int(shape[0]), int(shape[1]))
    need = max(fs.support, fs.image_support)
    if side < need:
        raise ValueError(
            f"an image of shape {tuple(shape)} is smaller than the {fs.name} filters' support: "
            f"both sides must be at least {need}"
        )
    levels = 0
    while side >= fs.support:
        levels += 1
        side = (side + 1) // 2
    return levels


def _check_levels(levels: int | None, shape: tuple[int, ...], fs: SteerableFilterSet) -> int:
    top = max_steerable_levels(shape, fs)
    if levels is None:
        return top
    if isinstance(levels, bool) or not isinstance(levels, int | np.integer):
        raise TypeError(f"levels must be an int or None, got {type(levels).__name__}")
    if not 1 <= levels <= top:
        raise ValueError(
            f"levels must be between 1 and {top} for an image of shape {tuple(shape)} with the "
            f"{fs.name} filters (support {fs.support}), got {levels}"
        )
    return int(levels)


def _check_engine(engine: str) -> str:
    get_engine(engine)  # a ValueError naming the engines for another name
    return engine


def _check_rank_tol(rank_tol: float) -> float:
    rank_tol = float(rank_tol)
    if not 0.0 <= rank_tol < 1.0:
        raise ValueError(f"rank_tol must lie in [0, 1), got {rank_tol}")
    return rank_tol


# --------------------------------------------------------------------------- stage filters


def _monomial_matrix(fs: SteerableFilterSet) -> np.ndarray:
    """``M[k, a] = C(K, a) cos^a θ_k sin^(K-a) θ_k``: the bands as ``B = M · D``."""
    theta = fs.angles[:, None]
    a = np.arange(fs.order + 1)[None, :]
    binomials = np.array([comb(fs.order, int(i)) for i in a[0]], dtype=np.float64)
    return binomials * np.cos(theta) ** a * np.sin(theta) ** (fs.order - a)


@lru_cache(maxsize=8)
def _monomial_filters(fs: SteerableFilterSet) -> np.ndarray:
    """The bands rewritten in the angular-monomial basis, ``D = M⁻¹ B`` (module docstring)."""
    return np.einsum("ak,kij->aij", np.linalg.inv(_monomial_matrix(fs)), fs.bands)


def _stage_filter(fs: SteerableFilterSet, stage: str) -> tuple[np.ndarray, int]:
    """The 2-D filter of a stage and its step: 'highpass0', 'lowpass0', 'lowpass', 'band<k>'
    and (internal) 'monomial<a>'."""
    if stage == "highpass0":
        return fs.highpass0, 1
    if stage == "lowpass0":
        return fs.lowpass0, 1
    if stage == "lowpass":
        return fs.lowpass, 2
    for prefix, table in (("band", fs.bands), ("monomial", None)):
        if stage.startswith(prefix) and stage[len(prefix) :].isdigit():
            k = int(stage[len(prefix) :])
            if k < fs.orientations:
                return (table if table is not None else _monomial_filters(fs))[k], 1
    raise ValueError(
        f"stage must be 'highpass0', 'lowpass0', 'lowpass' or 'band<k>' with k < "
        f"{fs.orientations}; got {stage!r}"
    )


def separable_terms(
    kernel: ArrayLike, rank_tol: float = DEFAULT_RANK_TOL
) -> tuple[np.ndarray, np.ndarray]:
    """Split a 2-D kernel into separable terms by its SVD, ``kernel ≈ Σ_t u_t v_tᵀ``.

    Parameters
    ----------
    kernel : array_like, shape (p, q)
        The 2-D filter.
    rank_tol : float
        Keep the fewest terms ``R`` with ``‖kernel - Σ_{t<R} u_t v_tᵀ‖_F ≤ rank_tol ·
        ‖kernel‖_F``; 0 keeps every non-zero singular value (exact to rounding).

    Returns
    -------
    u : ndarray, shape (R, p), float64
        Column (vertical) factors, each scaled by the square root of its singular value.
    v : ndarray, shape (R, q), float64
        Row (horizontal) factors, likewise.

    Examples
    --------
    >>> u, v = separable_terms(np.outer([1.0, 2.0, 1.0], [1.0, 0.0, -1.0]))
    >>> u.shape, bool(np.allclose(u.T @ v, np.outer([1, 2, 1], [1, 0, -1])))
    ((1, 3), True)
    """
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 2 or k.size == 0:
        raise ValueError(f"kernel must be a non-empty 2-D array, got shape {k.shape}")
    rank_tol = _check_rank_tol(rank_tol)
    u, s, vt = np.linalg.svd(k)
    tail = np.sqrt(np.cumsum(s[::-1] ** 2))[::-1]  # tail[t] = ‖s[t:]‖
    rank = max(1, int(np.count_nonzero(tail > rank_tol * np.linalg.norm(s))))
    root = np.sqrt(s[:rank])
    return (u[:, :rank] * root).T, vt[:rank] * root[:, None]


# --------------------------------------------------------------------------- sparse matrices


def _parities(kernel: np.ndarray) -> tuple[int, int] | None:
    """The mirror symmetry of a 2-D filter on each axis: +1 even, -1 odd; None if neither."""
    scale = 1e-10 * float(np.abs(kernel).max(initial=0.0))
    out = []
    for axis in (0, 1):
        flipped = np.flip(kernel, axis)
        if np.abs(flipped - kernel).max() <= scale:
            out.append(1)
        elif np.abs(flipped + kernel).max() <= scale:
            out.append(-1)
        else:
            return None
    return out[0], out[1]


@lru_cache(maxsize=8)
def _mirrors(fs: SteerableFilterSet) -> bool:
    """Whether every stage filter (the bands as angular monomials) has a mirror symmetry."""
    names = ["highpass0", "lowpass0", "lowpass"]
    names += [f"monomial{a}" for a in range(fs.orientations)]
    return all(_parities(_stage_filter(fs, name)[0]) is not None for name in names)


@lru_cache(maxsize=64)
def _stage_matrix_cached(
    fs: SteerableFilterSet, stage: str, h: int, w: int, boundary: str, dtype: str
) -> sp.csr_array:
    kernel, step = _stage_filter(fs, stage)
    return correlation_matrix_2d(kernel, (h, w), boundary, step=step).astype(dtype)


def stage_matrix(
    shape: Sequence[int],
    stage: str,
    filters: str | SteerableFilterSet | None = None,
    *,
    order: int | None = None,
    orientations: int | None = None,
    boundary: str = "reflect",
    dtype: type | np.dtype = np.float64,
) -> sp.csr_array:
    """One stage of the pyramid as an explicit sparse matrix on the flattened image.

    Built tap by tap from the 2-D filter (:func:`pyramids.operators.correlation_matrix_2d`),
    not from its separable split: the reference the engines are checked against.

    Parameters
    ----------
    shape : (h, w) or (h, w, c)
        Shape of the stage's input (for ``'band<k>'`` and ``'lowpass'``, a level's shape).
    stage : {'highpass0', 'lowpass0', 'band0', 'band1', …, 'lowpass'}
        ``H0``, ``L0``, ``B_k``, or ``L1`` followed by ``↓2`` (even rows and columns).
    filters, order, orientations
        Filter set selection (:func:`pyramids.steerable_filters.get_filter_set`).
    boundary : {'reflect', 'symmetric', 'nearest', 'periodic', 'zero'}
        Boundary mode, folded into the matrix.
    dtype : float32 or float64

    Returns
    -------
    scipy.sparse.csr_array, shape (h_out·w_out·c, h·w·c)
        ``h_out = ceil(h / 2)`` for ``'lowpass'``, else ``h``. A fresh copy.

    Examples
    --------
    >>> stage_matrix((20, 18), "lowpass").shape
    (90, 360)
    """
    fs = get_filter_set(filters, order=order, orientations=orientations)
    h, w, c = shape_hwc(shape)
    dt = float_dtype(dtype)
    _stage_filter(fs, stage)  # validates the stage name
    matrix = _stage_matrix_cached(fs, stage, h, w, check_boundary(boundary), dt.name)
    return per_channel(matrix, c).copy()


def analysis_matrix(
    shape: Sequence[int],
    levels: int | None = None,
    filters: str | SteerableFilterSet | None = None,
    *,
    order: int | None = None,
    orientations: int | None = None,
    boundary: str = "reflect",
    dtype: type | np.dtype = np.float64,
) -> sp.csr_array:
    """The whole analysis operator ``A`` as one sparse matrix (small images).

    Rows are stacked in the order of :meth:`SteerablePyramid.coefficients`: the high-pass,
    then level 0's bands ``0 … K``, level 1's, …, then the low-pass residual, each raveled
    row-major. Its fill-in grows with the composed filters (about ``(s_b + s_0)²`` taps per
    row of level 0), so keep to images of about 128² and below.

    Parameters
    ----------
    shape : (h, w) or (h, w, c)
        Image shape.
    levels : int, optional
        Number of levels; default the most the image allows.
    filters, order, orientations, boundary, dtype
        As for :func:`stage_matrix`.

    Returns
    -------
    scipy.sparse.csr_array, shape (n_coefficients, h·w·c)

    Examples
    --------
    >>> A = analysis_matrix((33, 40), orientations=2)
    >>> A.shape
    (4730, 1320)
    """
    fs = get_filter_set(filters, order=order, orientations=orientations)
    h, w, c = shape_hwc(shape)
    levels = _check_levels(levels, (h, w), fs)
    kwargs = {"filters": fs, "boundary": boundary, "dtype": dtype}
    shapes = level_shapes((h, w), levels)
    blocks = [stage_matrix((h, w), "highpass0", **kwargs)]
    path = stage_matrix((h, w), "lowpass0", **kwargs)  # image → current level's input
    for shape_l in shapes[:-1]:
        for k in range(fs.orientations):
            blocks.append(stage_matrix(shape_l, f"band{k}", **kwargs) @ path)
        path = stage_matrix(shape_l, "lowpass", **kwargs) @ path
    blocks.append(path)
    return per_channel(sp.vstack(blocks, format="csr"), c)


# --------------------------------------------------------------------------- the transform


@lru_cache(maxsize=256)
def _stage_operator(
    fs: SteerableFilterSet,
    stage: str,
    h: int,
    w: int,
    boundary: str,
    rank_tol: float,
    synthesis: str | None,
) -> Separable:
    """A stage for an input of shape (h, w) as a sum of separable terms, or its synthesis.

    ``synthesis`` is None (the analysis), ``'adjoint'`` (its transpose) or ``'mirror'`` (the
    mirror synthesis, boundary ``'reflect'`` only; see :meth:`SteerablePyramid.reconstruct`).
    """
    kernel, step = _stage_filter(fs, stage)
    us, vs = separable_terms(kernel, rank_tol)
    if synthesis == "mirror":
        # Give each factor its axis's symmetry (the sum of the terms is unchanged, because
        # the kernel has it); then correlate the coefficients, on every step-th sample and
        # mirrored with that symmetry, with the flipped factors.
        py, px = _parities(kernel)
        us, vs = (us + py * us[:, ::-1]) / 2, (vs + px * vs[:, ::-1]) / 2
        rows = [correlation_matrix(u[::-1], h, step=step, upsample=True, parity=py) for u in us]
        cols = [correlation_matrix(v[::-1], w, step=step, upsample=True, parity=px) for v in vs]
        return Separable(rows, cols)
    rows = [correlation_matrix(u, h, boundary, step=step) for u in us]
    cols = [correlation_matrix(v, w, boundary, step=step) for v in vs]
    op = Separable(rows, cols)
    return op.T if synthesis == "adjoint" else op  # kron(U, V)ᵀ = kron(Uᵀ, Vᵀ)


class _Operators:
    """The stages of one (filters, boundary, rank_tol) choice, applied by one engine."""

    def __init__(
        self,
        fs: SteerableFilterSet,
        boundary: str,
        engine: str,
        rank_tol: float,
        threads: int | None = None,
    ):
        self.fs, self.boundary, self.rank_tol = fs, boundary, rank_tol
        self.engine = get_engine(engine)
        self.threads = resolve_threads(threads)
        # The mirror synthesis differs from the adjoint only with 'reflect' (with the other
        # mirrored or periodic extensions the transpose already is it; 'nearest' has none).
        self.mirrors = boundary == "reflect" and _mirrors(fs)
        self.monomials = _monomial_matrix(fs)  # the bands B = M · D

    def apply(
        self,
        name: str,
        x: np.ndarray,
        synthesis: str | None = None,
        shape: tuple[int, int] | None = None,
        add_to: np.ndarray | None = None,
    ) -> np.ndarray:
        """Stage ``name`` on ``x``, or with ``synthesis`` ('adjoint' or 'mirror') its
        synthesis onto a stage input of ``shape``; with ``add_to``, added to that array."""
        if synthesis == "mirror" and not self.mirrors:
            synthesis = "adjoint"
        h, w = x.shape[:2] if synthesis is None else shape
        op = _stage_operator(self.fs, name, h, w, self.boundary, self.rank_tol, synthesis)
        combine = None if add_to is None else (np.add, add_to)
        return self.engine.apply(op, x, out=add_to, combine=combine, threads=self.threads)

    def analyse(self, x: np.ndarray, levels: int):
        """``(H0 x, bands, residual)`` (docs/design.md §4); each level's bands through the
        angular monomials, ``B_k = Σ_a M[k, a] D_a`` (module docstring)."""
        with blas_limited():  # for all the passes at once (pyramids.laplacian_pyramid)
            highpass = self.apply("highpass0", x)
            low = self.apply("lowpass0", x)
            bands = []
            for _ in range(levels):
                monomials = [self.apply(f"monomial{a}", low) for a in range(self.fs.orientations)]
                bands.append(mix(monomials, self.monomials, threads=self.threads))
                low = self.apply("lowpass", low)
        return highpass, bands, low

    def synthesise(self, highpass, bands, residual, synthesis: str = "adjoint") -> np.ndarray:
        """``H0ᵀ h0 + L0ᵀ(Σ_k B_kᵀ b_k + L1ᵀ ↑2(…))`` (docs/design.md §4), each ``ᵀ`` the
        stage's adjoint or its mirror synthesis."""
        low = residual
        with blas_limited():  # for all the passes at once (pyramids.laplacian_pyramid)
            for level_bands in reversed(bands):
                shape = level_bands[0].shape[:2]
                low = self.apply("lowpass", low, synthesis, shape)
                # Σ_k B_kᵀ b_k = Σ_a D_aᵀ (Σ_k M[k, a] b_k); the monomials D_a are also where
                # the mirror synthesis is defined, because each is even or odd about either axis.
                mixed = mix(level_bands, self.monomials.T, threads=self.threads)
                for a, coef in enumerate(mixed):
                    self.apply(f"monomial{a}", coef, synthesis, shape, add_to=low)
            shape = highpass.shape[:2]
            image = self.apply("lowpass0", low, synthesis, shape)
            return self.apply("highpass0", highpass, synthesis, shape, add_to=image)


# --------------------------------------------------------------------------- the pyramid


class SteerablePyramid(OrientedPyramid):
    """A steerable pyramid: high-pass residual, oriented bands per level, low-pass residual.

    Build one with :func:`steerable_pyramid`, or from coefficients (edited ones too) with the
    constructor, then collapse it with :meth:`reconstruct`.

    Parameters
    ----------
    highpass : ndarray, shape (h, w) or (h, w, c)
        High-pass residual ``H0 x``.
    bands : sequence of sequences of ndarray
        ``bands[level][orientation]``, level ``ℓ`` of shape ``(ceil(h/2^ℓ), ceil(w/2^ℓ)[, c])``.
    residual : ndarray
        Low-pass residual, of the shape of a level below the last.
    filters : {'sp0', 'sp1', 'sp3', 'sp5'} or SteerableFilterSet
        The filter set; it must have ``len(bands[0])`` orientations.
    boundary : str
        Boundary mode the coefficients were computed with.
    engine : {'separable', 'matrix'}
        How :meth:`reconstruct` applies the operators.
    rank_tol : float
        Tolerance of the separable split (see the module docstring).

    Attributes
    ----------
    highpass, bands, residual
        The coefficients, float32 or float64 (one dtype throughout).
    filters : SteerableFilterSet
    boundary, engine, rank_tol
    """

    kind = "steerable"

    def __init__(
        self,
        highpass: ArrayLike,
        bands: Sequence[Sequence[ArrayLike]],
        residual: ArrayLike,
        *,
        filters: str | SteerableFilterSet = "sp3",
        boundary: str = "reflect",
        engine: str = "separable",
        rank_tol: float = DEFAULT_RANK_TOL,
    ):
        self.filters = get_filter_set(filters)
        self.boundary = check_boundary(boundary)
        self.engine = _check_engine(engine)
        self.rank_tol = _check_rank_tol(rank_tol)
        hp = as_float_image(highpass, "highpass")
        dtype = hp.dtype
        if len(bands) < 1:
            raise ValueError("bands must hold at least one level")
        shapes = level_shapes(hp.shape[:2], len(bands))
        tail = hp.shape[2:]
        checked = []
        for level, level_bands in enumerate(bands):
            if len(level_bands) != self.filters.orientations:
                raise ValueError(
                    f"bands[{level}] must hold {self.filters.orientations} orientations for "
                    f"the {self.filters.name} filters, got {len(level_bands)}"
                )
            row = []
            for k, band in enumerate(level_bands):
                array = as_float_image(band, f"bands[{level}][{k}]")
                if array.shape != (*shapes[level], *tail):
                    raise ValueError(
                        f"bands[{level}][{k}] must have shape {(*shapes[level], *tail)}, "
                        f"got {array.shape}"
                    )
                row.append(array.astype(dtype, copy=False))
            checked.append(row)
        res = as_float_image(residual, "residual")
        if res.shape != (*shapes[-1], *tail):
            raise ValueError(f"residual must have shape {(*shapes[-1], *tail)}, got {res.shape}")
        self.highpass = hp
        self.bands = checked
        self.residual = res.astype(dtype, copy=False)

    # ------------------------------------------------------------------ properties

    @property
    def levels(self) -> int:
        """Number of levels of oriented bands."""
        return len(self.bands)

    @property
    def orientations(self) -> int:
        """Number of oriented bands per level."""
        return self.filters.orientations

    def _operators(self, threads: int | None = None) -> _Operators:
        return _Operators(self.filters, self.boundary, self.engine, self.rank_tol, threads)

    # ------------------------------------------------------------------ coefficients

    def coefficients(self) -> np.ndarray:
        """All coefficients stacked as one vector, in the row order of :func:`analysis_matrix`.

        Returns
        -------
        ndarray, shape (n_coefficients,)
        """
        parts = [self.highpass.ravel()]
        parts += [band.ravel() for level in self.bands for band in level]
        parts.append(self.residual.ravel())
        return np.concatenate(parts)

    def _from_vector(self, vector: np.ndarray) -> tuple:
        """Split a stacked coefficient vector back into (highpass, bands, residual)."""
        pos = 0

        def take(like: np.ndarray) -> np.ndarray:
            nonlocal pos
            piece = vector[pos : pos + like.size].reshape(like.shape)
            pos += like.size
            return piece

        highpass = take(self.highpass)
        bands = [[take(b) for b in level] for level in self.bands]
        return highpass, bands, take(self.residual)

    # ------------------------------------------------------------------ reconstruction

    def reconstruct(
        self,
        method: str = "mirror",
        tol: float = 1e-6,
        maxiter: int = 100,
        *,
        refine: int = 0,
        threads: int | None = None,
    ) -> np.ndarray:
        """Collapse the pyramid into an image.

        Parameters
        ----------
        method : {'mirror', 'adjoint', 'exact'}
            ``'adjoint'``: ``Aᵀ c`` (docs/design.md §4), what a self-inverting filter set needs.
            Its error is the filter set's (:attr:`SteerableFilterSet.energy_tolerance`)
            with ``boundary='periodic'``, but with ``'reflect'`` the transpose of the fold
            counts the mirrored samples twice, and it errs near the borders (module
            docstring).
            ``'mirror'`` (default): the same synthesis filters applied to the coefficients
            extended the way the analysis extended the image: zeros between the samples of
            a downsampled level, then a mirror with each angular monomial band's symmetry
            (even or odd about either axis). It costs about what the adjoint costs. With
            ``'reflect'`` its error is close to the filter set's, borders included, but
            for a border term where a level has an even side (camera, 512²: 0.072 at most,
            0.024 inside a 32-pixel margin). With the other boundaries it *is* the
            adjoint: for ``'symmetric'``, ``'periodic'`` and ``'zero'`` the transpose
            already extends the coefficients that way, and ``'nearest'`` has no mirror.
            Only ``'periodic'`` then inverts as well (0.024 at most, at even sides); the
            others keep large border errors (camera, 512²: 15 at most with
            ``'symmetric'``, 17 with ``'nearest'``, 0.6 with ``'zero'``), which only
            ``'exact'`` removes.
            ``'exact'``: the least-squares solution of ``A x = c`` by conjugate gradients
            on ``AᵀA``, started from the mirror synthesis.
        tol : float
            For ``'exact'``: stop when ``‖Aᵀ(c - A x)‖ ≤ tol · ‖Aᵀ c‖``. Because ``AᵀA`` is
            close to the identity, the relative error of ``x`` is of the same size. Float32
            pyramids cannot go much below 1e-6.
        maxiter : int
            For ``'exact'``: most conjugate-gradient iterations (each costs one analysis
            and one synthesis). A ``RuntimeWarning`` says when ``tol`` was not reached.
        refine : int
            Correction steps ``x ← x + S(c - A x)`` after ``x = S c``, ``S`` the mirror
            synthesis; each costs one analysis and one synthesis. On the coefficients of
            an image, each step divides the error by about ten (camera, 512², sp3,
            float32: 0.072 at most, RMS 0.0059; after one step 0.0078 and 0.00049; after
            two 0.0011 and 0.00006). The steps converge only where ``S`` is close to an
            inverse of ``A``, so they are allowed with ``method='mirror'`` and
            ``boundary='reflect'``, or ``'periodic'`` when every level but the residual
            has even sides; elsewhere a ``ValueError`` points to ``'exact'``. On edited
            coefficients the steps tend to ``(SA)⁻¹ S c``, which is not the least-squares
            inverse (``'exact'`` is).
        threads : int, optional
            Threads to split the work over; default :func:`pyramids.parallel.default_threads`
            (``$PYRAMIDS_NUM_THREADS``, else up to 4 cores). The result does not depend on it.

        Returns
        -------
        ndarray, shape (h, w) or (h, w, c), the coefficients' dtype

        Examples
        --------
        >>> x = np.random.default_rng(0).random((40, 36))
        >>> pyr = steerable_pyramid(x)
        >>> bool(np.abs(pyr.reconstruct("exact", tol=1e-10) - x).max() < 1e-8)
        True
        """
        if method not in ("mirror", "adjoint", "exact"):
            raise ValueError(f"method must be 'mirror', 'adjoint' or 'exact', got {method!r}")
        if isinstance(refine, bool) or not isinstance(refine, int | np.integer) or refine < 0:
            raise ValueError(f"refine must be a non-negative int, got {refine!r}")
        ops = self._operators(threads)
        if refine and (method != "mirror" or not self._refines(ops)):
            raise ValueError(
                "refine needs method='mirror' with boundary 'reflect', or 'periodic' with even "
                "sides at every level but the residual's (elsewhere the steps need not "
                f"converge); got method={method!r}, boundary={self.boundary!r}, levels of "
                f"shapes {[level[0].shape[:2] for level in self.bands]}: use method='exact'"
            )
        coefficients = (self.highpass, self.bands, self.residual)
        if method != "exact":
            x = ops.synthesise(*coefficients, method)
            for _ in range(refine):
                residual = _subtract_from(coefficients, ops.analyse(x, self.levels))
                x += ops.synthesise(*residual, "mirror")
            return x
        tol = float(tol)
        if not tol > 0:
            raise ValueError(f"tol must be positive, got {tol}")
        if isinstance(maxiter, bool) or not isinstance(maxiter, int | np.integer) or maxiter < 0:
            raise ValueError(f"maxiter must be a non-negative int, got {maxiter!r}")
        rhs = ops.synthesise(*coefficients, "adjoint")
        start = ops.synthesise(*coefficients, "mirror") if ops.mirrors else rhs.copy()
        return _conjugate_gradients(ops, rhs, start, self.levels, tol, int(maxiter))

    def _refines(self, ops: _Operators) -> bool:
        """Whether the mirror synthesis is close enough to an inverse for ``refine``."""
        if self.boundary == "periodic":  # the period survives ↓2 only at even sides
            sides = [side for level in self.bands for side in level[0].shape[:2]]
            return all(side % 2 == 0 for side in sides)
        return ops.mirrors

    # ------------------------------------------------------------------ steering

    def steer(self, level: int, theta: float) -> np.ndarray:
        """The response of ``level`` at angle ``theta`` (see :func:`steer`).

        Parameters
        ----------
        level : int
            Level index, ``0 … levels - 1``.
        theta : float
            Angle in radians, counter-clockwise from the x axis of the displayed image.

        Returns
        -------
        ndarray, the level's shape and dtype
        """
        if not -self.levels <= level < self.levels:
            raise ValueError(f"level must be in 0 … {self.levels - 1}, got {level}")
        return steer(self.bands[level], theta)

    # ------------------------------------------------------------------ pictures, files

    def _settings(self) -> dict[str, object]:
        return {
            "filters": self.filters.name,
            "orientations": self.orientations,
            "boundary": self.boundary,
            "engine": self.engine,
            "rank_tol": self.rank_tol,
        }

    @classmethod
    def _array_names(cls, meta) -> list[str]:
        fs = get_filter_set(meta_value(meta, "filters", str))
        orientations = meta_value(meta, "orientations", int)
        if orientations != fs.orientations:
            raise ValueError(
                f"the {fs.name} filters have {fs.orientations} orientations, but the file "
                f"says {orientations}"
            )
        if meta["levels"] < 1:
            raise ValueError("a steerable pyramid has at least 1 level, the file says 0")
        levels = range(meta["levels"])
        bands = [f"band_{level}_{k}" for level in levels for k in range(orientations)]
        return ["highpass", *bands, "residual"]

    @classmethod
    def _from_parts(cls, arrays, meta) -> SteerablePyramid:
        fs = get_filter_set(meta["filters"])
        bands = [
            [arrays[f"band_{level}_{k}"] for k in range(fs.orientations)]
            for level in range(meta["levels"])
        ]
        options = {}
        if "engine" in meta:
            options["engine"] = meta_value(meta, "engine", str)
        if "rank_tol" in meta:
            options["rank_tol"] = meta_value(meta, "rank_tol", float)
        boundary = meta_value(meta, "boundary", str)
        return cls(
            arrays["highpass"], bands, arrays["residual"], filters=fs, boundary=boundary, **options
        )

    def montage_rows(self) -> list[list[np.ndarray]]:
        """Rows of images for a montage picture.

        Returns
        -------
        list of lists of ndarray
            ``[[highpass], [bands of level 0 …], …, [residual]]``: one row per level with
            its orientations as columns, the residuals on rows of their own. Arrays are the
            coefficients themselves (2-D or 3-D), not rescaled.
        """
        return [[self.highpass], *[list(level) for level in self.bands], [self.residual]]


def _subtract_from(coefficients: tuple, estimate: tuple) -> tuple:
    """``c - A x`` for coefficients ``c`` and ``estimate = A x``, written over the estimate."""
    (h, bands, r), (eh, ebands, er) = coefficients, estimate
    np.subtract(h, eh, out=eh)
    for level, elevel in zip(bands, ebands):
        for band, eband in zip(level, elevel):
            np.subtract(band, eband, out=eband)
    np.subtract(r, er, out=er)
    return eh, ebands, er


def _conjugate_gradients(
    ops: _Operators, rhs: np.ndarray, x: np.ndarray, levels: int, tol: float, maxiter: int
) -> np.ndarray:
    """Solve ``AᵀA x = Aᵀ c = rhs`` by conjugate gradients, starting from ``x`` (updated)."""

    def normal(v: np.ndarray) -> np.ndarray:
        return ops.synthesise(*ops.analyse(v, levels))

    # BLAS held to one thread: the dot products then sum in one order, whatever its threads.
    with blas_limited():
        r = rhs - normal(x)
        p = r.copy()
        rr = float(np.vdot(r, r))
        target = (tol * float(np.linalg.norm(rhs))) ** 2
        for _ in range(maxiter):
            if rr <= target:
                return x
            q = normal(p)
            alpha = rr / float(np.vdot(p, q))
            x += alpha * p
            r -= alpha * q
            rr_new = float(np.vdot(r, r))
            p *= rr_new / rr
            p += r
            rr = rr_new
    if rr > target:
        warnings.warn(
            f"exact reconstruction stopped after {maxiter} iterations at relative residual "
            f"{np.sqrt(rr) / max(float(np.linalg.norm(rhs)), 1e-300):.2e} > tol={tol:.1e}",
            RuntimeWarning,
            stacklevel=3,
        )
    return x


# --------------------------------------------------------------------------- public functions


def steer(level_bands: Sequence[ArrayLike] | np.ndarray, theta: float) -> np.ndarray:
    """Steer the basis bands of one level to the angle ``theta``.

    The ``K + 1`` bands of a level are directional derivatives of order ``K`` at the angles
    ``π k / (K + 1)``; the response at any angle is ``Σ_k w_k(θ) b_k`` with the weights of
    :func:`pyramids.steerable_filters.steering_weights` (docs/design.md §4). At a basis angle it
    returns that band (to rounding); at ``θ + π`` it returns ``(-1)^K`` times the band at θ.

    Parameters
    ----------
    level_bands : sequence of K + 1 arrays, each shape (h, w) or (h, w, c)
        The basis bands, e.g. ``pyramid.bands[level]``.
    theta : float
        Angle in radians, counter-clockwise from the x axis of the displayed image.

    Returns
    -------
    ndarray, the bands' shape and dtype

    Examples
    --------
    >>> pyr = steerable_pyramid(np.random.default_rng(1).random((40, 40)), orientations=2)
    >>> bool(np.allclose(steer(pyr.bands[0], np.pi / 2), pyr.bands[0][1]))
    True
    """
    bands = [as_float_image(b, "level_bands") for b in level_bands]
    if not bands:
        raise ValueError("level_bands must hold at least one band")
    if any(b.shape != bands[0].shape for b in bands):
        raise ValueError(f"level_bands must share one shape, got {[b.shape for b in bands]}")
    theta = float(theta)
    if not np.isfinite(theta):
        raise ValueError(f"theta must be finite, got {theta}")
    dtype = np.result_type(*bands)
    weights = steering_weights(theta, len(bands) - 1).astype(dtype)
    out = bands[0] * weights[0]
    for weight, band in zip(weights[1:], bands[1:]):
        out += weight * band
    return out.astype(dtype, copy=False)


def steerable_pyramid(
    image: ArrayLike,
    levels: int | None = None,
    orientations: int | None = None,
    *,
    order: int | None = None,
    filters: str | SteerableFilterSet | None = None,
    boundary: str = "reflect",
    engine: str = "separable",
    rank_tol: float = DEFAULT_RANK_TOL,
    threads: int | None = None,
) -> SteerablePyramid:
    """Decompose an image into a steerable pyramid (Simoncelli & Freeman 1995).

    Parameters
    ----------
    image : array_like, shape (h, w) or (h, w, c)
        Grey or colour image; float32 and float64 keep their dtype, integers are scaled to
        [0, 1] (:func:`pyramids.arrays.as_float_image`). Both sides must be at least the
        filters' support (17 for ``sp3``, :func:`max_steerable_levels`).
    levels : int, optional
        Number of levels of oriented bands, ``1 … max_steerable_levels(image.shape)``;
        default the maximum.
    orientations : {1, 2, 4, 6}, optional
        Bands per level; default 4 (``sp3``). Alternatively give ``order`` (0, 1, 3, 5) or
        ``filters`` (``'sp0'`` … ``'sp5'``); at most one of the three.
    boundary : {'reflect', 'symmetric', 'nearest', 'periodic', 'zero'}
        Boundary mode folded into every stage; default ``reflect`` (scipy's ``mirror``).
    engine : {'separable', 'matrix'}
        ``'separable'`` (tiled and threaded, fast) or ``'matrix'`` (plain sparse products,
        the reference); :mod:`pyramids.engine`.
    rank_tol : float
        Tolerance of the separable split (module docstring); the default keeps full rank.
    threads : int, optional
        Threads to split the work over; default :func:`pyramids.parallel.default_threads`
        (``$PYRAMIDS_NUM_THREADS``, else up to 4 cores). The result does not depend on it.

    Returns
    -------
    SteerablePyramid

    Raises
    ------
    ValueError
        For a bad number of levels, an image smaller than the filters, an unknown filter set,
        boundary or engine.

    Examples
    --------
    >>> pyr = steerable_pyramid(np.zeros((64, 48), np.float32), levels=2)
    >>> pyr.highpass.shape, len(pyr.bands), len(pyr.bands[1]), pyr.bands[1][0].shape
    ((64, 48), 2, 4, (32, 24))
    >>> pyr.residual.shape, pyr.residual.dtype
    ((16, 12), dtype('float32'))
    """
    x = as_float_image(image)
    fs = get_filter_set(filters, order=order, orientations=orientations)
    levels = _check_levels(levels, x.shape, fs)
    boundary = check_boundary(boundary)
    engine = _check_engine(engine)
    rank_tol = _check_rank_tol(rank_tol)
    ops = _Operators(fs, boundary, engine, rank_tol, threads)
    highpass, bands, residual = ops.analyse(x, levels)
    return SteerablePyramid(
        highpass,
        bands,
        residual,
        filters=fs,
        boundary=boundary,
        engine=engine,
        rank_tol=rank_tol,
    )
