"""Derived rounding tolerances for the steerable pyramid's two engines (test helper).

Both engines apply every stage as the same stored separable operator ``S = Σ_t kron(U_t,
V_t)`` (``pyramids.steerable._stage_operator``; the bands through the angular monomials,
``B_k = Σ_a M[k, a] D_a``), and differ only in how they round. A coefficient (analysis) or an
image (synthesis) is a sum of chains of such products; computed in floating point, each
output errs by at most ``γ_N · (|S_m| ⋯ |S_1| |x|)`` elementwise, where ``N`` counts the
products and additions on the longest path to it (per stage: for the separable engine
``n_V + R·n_U``, its width pass and its interleaved height pass; for the matrix engine
``n_U + n_V + R``, a sparse product along each axis per term and the sum of the terms; plus
the mixing with ``M`` and every accumulation ``+=``), ``γ_N = N·u / (1 - N·u)``. Two engines
computing the same coefficients therefore differ by at most the sum of their two bounds
(plus ``|A_sep - A_mat| |x|``, the difference of what they store, carried here for an
engine that stores another form: ``|Π S_sep - Π S_mat| |x|`` grows at each stage by
``|S_sep| d + |S_sep - S_mat| a_mat``; zero for these two). Forming each stage's ``|S|`` here
in float64 (a product of two factors, a sum of ``R ≤ 17`` terms and of ``K + 1 ≤ 6``
monomials) rounds at most 32 times, which ``γ_32 · (a_sep + a_mat)`` covers.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.sparse as sp

from pyramids.pyramid import level_shapes
from pyramids.steerable import (
    DEFAULT_RANK_TOL,
    _mirrors,
    _monomial_matrix,
    _stage_operator,
)

ENGINES = ("separable", "matrix")


def gamma(n: int, u: float) -> float:
    return n * u / (1 - n * u)


def _row_nnz(matrix: sp.csr_array) -> int:
    return int(np.diff(sp.csr_array(matrix).indptr).max(initial=0))


class Stage:
    """One stage as an engine stores it: operator, its absolute value, products per output."""

    def __init__(self, matrix: sp.csr_array, absolute: sp.csr_array, products: int):
        self.matrix, self.absolute, self.products = matrix, absolute, products

    def plus(self, products: int) -> Stage:
        """The same operator with ``products`` more operations on every path."""
        return Stage(self.matrix, self.absolute, self.products + products)


def _sum_of_krons(rows, cols) -> tuple[sp.csr_array, sp.csr_array]:
    """``Σ_t kron(U_t, V_t)`` and ``Σ_t kron(|U_t|, |V_t|)``.

    The factors of one stage share their sparsity (the same folded positions), so the
    Kronecker products share theirs too: one product of the patterns, the values summed.
    """
    rows = [sp.csr_array(r) for r in rows]
    cols = [sp.csr_array(c) for c in cols]
    shared = all(
        np.array_equal(m.indptr, group[0].indptr) and np.array_equal(m.indices, group[0].indices)
        for group in (rows, cols)
        for m in group
    )
    if not shared:
        matrix = sum(sp.kron(r, c, format="csr") for r, c in zip(rows, cols))
        absolute = sum(sp.kron(abs(r), abs(c), format="csr") for r, c in zip(rows, cols))
        return sp.csr_array(matrix), sp.csr_array(absolute)
    pattern = sp.kron(
        sp.csr_array((np.ones(rows[0].nnz), rows[0].indices, rows[0].indptr), rows[0].shape),
        sp.csr_array((np.ones(cols[0].nnz), cols[0].indices, cols[0].indptr), cols[0].shape),
        format="coo",
    )  # entries ordered by the nonzeros of U, then those of V
    u = np.stack([r.data for r in rows])[:, :, None]
    v = np.stack([c.data for c in cols])[:, None, :]
    out = []
    for values in ((u * v).sum(axis=0), (np.abs(u) * np.abs(v)).sum(axis=0)):
        coo = sp.coo_array((values.ravel(), (pattern.row, pattern.col)), shape=pattern.shape)
        out.append(sp.csr_array(coo))
    return out[0], out[1]


@lru_cache(maxsize=512)
def _stored(fs, name: str, shape, boundary: str, mode: str | None):
    """Stage ``name`` for a level of ``shape`` as both engines store it: ``(Σ_t kron(U_t,
    V_t), Σ_t kron(|U_t|, |V_t|), n_U, n_V, R)``."""
    op = _stage_operator(fs, name, *shape, boundary, DEFAULT_RANK_TOL, mode)
    matrix, absolute = _sum_of_krons(op.rows, op.cols)
    n_u = max(_row_nnz(r) for r in op.rows)
    n_v = max(_row_nnz(c) for c in op.cols)
    return matrix, absolute, n_u, n_v, op.terms


def _stage(fs, name: str, shape, boundary: str, engine: str, mode: str | None) -> Stage:
    """Stage ``name`` for a level of ``shape``: analysis (``mode=None``), 'adjoint', 'mirror'."""
    if mode == "mirror" and not (boundary == "reflect" and _mirrors(fs)):
        mode = "adjoint"
    matrix, absolute, n_u, n_v, terms = _stored(fs, name, shape, boundary, mode)
    products = n_v + terms * n_u if engine == "separable" else n_u + n_v + terms
    return Stage(matrix, absolute, products)


def _band(fs, k: int, shape, boundary: str, engine: str, mode: str | None) -> Stage:
    """Band ``k`` of a level, through the angular monomials and a mixing with ``M`` of
    ``K + 1`` products."""
    if mode == "mirror" and not (boundary == "reflect" and _mirrors(fs)):
        mode = "adjoint"  # as SteerablePyramid.reconstruct: the mirror is the adjoint there
    mix = _monomial_matrix(fs)[k]
    parts = [_stage(fs, f"monomial{a}", shape, boundary, engine, mode) for a in range(len(mix))]
    matrix = sum(m * p.matrix for m, p in zip(mix, parts))
    absolute = sum(abs(m) * p.absolute for m, p in zip(mix, parts))
    # the mixing with M (K + 1 products), and in a synthesis K + 1 accumulations ``into``
    extra = fs.orientations if mode is None else 2 * fs.orientations
    return Stage(
        sp.csr_array(matrix), sp.csr_array(absolute), max(p.products for p in parts) + extra
    )


class _Bound:
    """Bounds carried along a path, for both engines: ``a_*`` bound ``|S_m|⋯|S_1| |input|``,
    ``d`` bounds ``|Π S_sep - Π S_mat| |input|`` (each step adds ``|S_sep - S_mat| a_mat``
    and carries the rest through ``|S_sep|``), ``n_*`` count operations on the longest path."""

    def __init__(self, a_sep, a_mat, d, n_sep: int, n_mat: int):
        self.a_sep, self.a_mat, self.d, self.n_sep, self.n_mat = a_sep, a_mat, d, n_sep, n_mat

    @classmethod
    def start(cls, absolute: np.ndarray) -> _Bound:
        return cls(absolute, absolute, np.zeros_like(absolute), 0, 0)

    def through(self, pair: tuple[Stage, Stage, sp.csr_array]) -> _Bound:
        sep, mat, difference = pair
        return _Bound(
            sep.absolute @ self.a_sep,
            mat.absolute @ self.a_mat,
            sep.absolute @ self.d + difference @ self.a_mat,
            self.n_sep + sep.products,
            self.n_mat + mat.products,
        )

    def add(self, other: _Bound, operations: int = 1) -> _Bound:
        """The bound of a sum of two paths (``operations`` additions after both)."""
        return _Bound(
            self.a_sep + other.a_sep,
            self.a_mat + other.a_mat,
            self.d + other.d,
            max(self.n_sep, other.n_sep) + operations,
            max(self.n_mat, other.n_mat) + operations,
        )

    def bound(self, u: float) -> np.ndarray:
        # CONSTRUCTION covers forming the stored matrices here (module docstring).
        total = self.a_sep + self.a_mat
        return (
            gamma(self.n_sep, u) * self.a_sep
            + gamma(self.n_mat, u) * self.a_mat
            + self.d
            + gamma(CONSTRUCTION, u) * total
        )


#: Roundings in forming one entry of a stored matrix here (module docstring).
CONSTRUCTION = 32


@lru_cache(maxsize=512)
def _pair(fs, name: str, shape, boundary: str, mode: str | None):
    """Both engines' stage ``name`` and ``|S_sep - S_mat|``."""
    if name.startswith("band"):
        sep, mat = (_band(fs, int(name[4:]), shape, boundary, e, mode) for e in ENGINES)
    else:
        sep, mat = (_stage(fs, name, shape, boundary, e, mode) for e in ENGINES)
    return sep, mat, sp.csr_array(abs(sep.matrix - mat.matrix))


def engine_difference_bound(fs, x, levels, boundary, coefficients=None, mode=None):
    """Elementwise bound on ``|separable - matrix|`` for float64 inputs.

    With ``mode=None``: the coefficients of the image ``x`` (``(h, w)`` or ``(h, w, c)``),
    as ``SteerablePyramid.coefficients`` stacks them. With ``mode`` 'adjoint' or 'mirror':
    the synthesis, into an image of ``x``'s shape, of ``coefficients`` (a tuple
    ``(highpass, bands, residual)`` as ``SteerablePyramid`` holds them).
    """
    u = np.finfo(np.float64).eps / 2
    h, w = x.shape[:2]
    channels = x.shape[2] if x.ndim == 3 else 1
    shapes = level_shapes((h, w), levels)

    def flat(array):
        return np.abs(np.asarray(array, dtype=np.float64)).reshape(-1, channels)

    if mode is None:
        image = _Bound.start(flat(x))
        groups = [image.through(_pair(fs, "highpass0", shapes[0], boundary, None))]
        path = image.through(_pair(fs, "lowpass0", shapes[0], boundary, None))
        for shape in shapes[:-1]:
            for k in range(fs.orientations):
                groups.append(path.through(_pair(fs, f"band{k}", shape, boundary, None)))
            path = path.through(_pair(fs, "lowpass", shape, boundary, None))
        groups.append(path)
        return np.concatenate([g.bound(u).ravel() for g in groups])
    highpass, bands, residual = coefficients
    low = _Bound.start(flat(residual))
    for shape, level_bands in zip(shapes[-2::-1], bands[::-1]):
        low = low.through(_pair(fs, "lowpass", shape, boundary, mode))
        for k, band in enumerate(level_bands):
            term = _Bound.start(flat(band)).through(_pair(fs, f"band{k}", shape, boundary, mode))
            low = low.add(term)
    image = low.through(_pair(fs, "lowpass0", shapes[0], boundary, mode))
    high = _Bound.start(flat(highpass)).through(_pair(fs, "highpass0", shapes[0], boundary, mode))
    return image.add(high).bound(u).reshape(x.shape)
