"""Steerable pyramid filter sets and Gaussian-derivative steerable filters (docs/design.md §4).

Filter sets
-----------
``sp0``, ``sp1``, ``sp3`` and ``sp5`` are the spatial-domain steerable pyramid filters of
orders 0, 1, 3 and 5 (1, 2, 4 and 6 orientations) designed by Karasaridis & Simoncelli (1996)
for the steerable pyramid of Simoncelli & Freeman (1995). The numbers below are those of the
``sp0Filters.m`` … ``sp5Filters.m`` tables of Eero Simoncelli's matlabPyrTools (the same
numbers ship with the ``pyrtools`` Python package); numbers are facts, the code and layout here
are this package's own.

Every set has

* ``highpass0`` (``H0``): the high-pass residual filter applied to the image;
* ``lowpass0`` (``L0``): the low-pass filter applied to the image before the first level;
* ``bands`` (``B_k``): ``K + 1`` oriented band-pass filters, band ``k`` a directional
  derivative of order ``K`` at the angle ``θ_k = π k / (K + 1)``;
* ``lowpass`` (``L1``): the low-pass filter applied before every downsampling by 2 (it sums
  to 2, the gain that ``↓2`` needs for the adjoint to reconstruct).

Angles are measured counter-clockwise from the x axis of the image *as displayed*: x points
along the columns (right), y against the rows (up). Band 0 of every oriented set is a
derivative along x, so it responds to vertical edges.

The tables are stored compactly: ``highpass0``, ``lowpass0``, ``lowpass`` and the ``sp0`` band
have the symmetries of the square (mirror in both axes and the diagonal), so only an octant is
written out; of the oriented bands only the first half is written, the other half being the
same filters rotated by 90° (``np.rot90``), exactly as in the published tables.

Filters are *correlation* kernels: ``out[i, j] = Σ_{a,b} f[a, b] · x[i + a - r, j + b - r]``
with ``r`` the kernel radius, as in ``scipy.ndimage.correlate``.

Gaussian-derivative filters
---------------------------
:func:`gaussian_derivative` samples the directional derivative of order ``n`` of a 2-D
Gaussian along any angle, :func:`gaussian_derivative_basis` the ``n + 1`` basis filters at the
angles ``π k / (n + 1)``, and :func:`steering_weights` the interpolation weights that combine
basis responses into the response at any angle. For order 1 they reduce to the lecture's
``g^α = cos α · g_x + sin α · g_y``.

References
----------
E. P. Simoncelli and W. T. Freeman, "The steerable pyramid: a flexible architecture for
multi-scale derivative computation", ICIP 1995.
A. Karasaridis and E. P. Simoncelli, "A filter design technique for steerable pyramid image
transforms", ICASSP 1996.
W. T. Freeman and E. H. Adelson, "The design and use of steerable filters", IEEE PAMI 13(9),
1991.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "FILTER_SETS",
    "SteerableFilterSet",
    "gaussian_derivative",
    "gaussian_derivative_basis",
    "get_filter_set",
    "steering_harmonics",
    "steering_weights",
]

#: Names of the published filter sets, keyed by their derivative order.
FILTER_SETS: dict[int, str] = {0: "sp0", 1: "sp1", 3: "sp3", 5: "sp5"}

#: Relative energy tolerance of each set, ``|Σ‖c‖² / ‖x‖² - 1|``, with the periodic boundary
#: and sides that ``↓2`` halves exactly at every level (other boundaries add border errors,
#: odd sides a small excess of low-pass samples). Measured on ``skimage.data.camera``,
#: ``astronaut`` and white noise (largest seen: sp0 0.0012, sp1 0.0036, sp3 0.0034,
#: sp5 0.0094), with some margin; ``tests/test_steerable.py`` checks them.
_ENERGY_TOLERANCE: dict[str, float] = {"sp0": 0.003, "sp1": 0.006, "sp3": 0.006, "sp5": 0.015}


@dataclass(frozen=True, eq=False)
class SteerableFilterSet:
    """One published steerable pyramid filter set (read-only float64 arrays).

    Attributes
    ----------
    name : str
        ``'sp0'``, ``'sp1'``, ``'sp3'`` or ``'sp5'``.
    order : int
        Derivative order ``K`` of the band filters.
    highpass0 : ndarray, shape (s0, s0), float64
        High-pass residual filter ``H0``.
    lowpass0 : ndarray, shape (s1, s1), float64
        Initial low-pass filter ``L0``.
    bands : ndarray, shape (K + 1, sb, sb), float64
        Oriented band-pass filters ``B_k``, band ``k`` at angle ``π k / (K + 1)``.
    lowpass : ndarray, shape (s2, s2), float64
        Low-pass filter ``L1`` applied before each downsampling (sums to 2).
    energy_tolerance : float
        Documented bound on ``|Σ‖c‖² / ‖x‖² - 1|`` (the set is self-inverting only
        approximately; see the module docstring of :mod:`pyramids.steerable`).
    """

    name: str
    order: int
    highpass0: np.ndarray
    lowpass0: np.ndarray
    bands: np.ndarray
    lowpass: np.ndarray
    energy_tolerance: float

    @property
    def orientations(self) -> int:
        """Number of oriented bands per level, ``order + 1``."""
        return self.order + 1

    @property
    def angles(self) -> np.ndarray:
        """Angles of the basis bands in radians, ``π k / (order + 1)``, shape (order + 1,)."""
        return np.pi * np.arange(self.orientations) / self.orientations

    @property
    def harmonics(self) -> tuple[int, ...]:
        """Angular harmonics of the band filters (see :func:`steering_harmonics`)."""
        return steering_harmonics(self.order)

    @property
    def support(self) -> int:
        """Side of the largest filter applied at one pyramid level (bands and lowpass)."""
        return max(self.bands.shape[-1], self.lowpass.shape[-1])

    @property
    def image_support(self) -> int:
        """Side of the largest filter applied to the full-size image (``H0`` and ``L0``)."""
        return max(self.highpass0.shape[-1], self.lowpass0.shape[-1])

    def __repr__(self) -> str:
        return (
            f"SteerableFilterSet({self.name!r}, order={self.order}, "
            f"orientations={self.orientations})"
        )


def _from_octant(rows: list[list[float]]) -> np.ndarray:
    """Rebuild a square-symmetric filter from the octant ``rows[i][j] = f(i, j)``, ``j ≤ i``."""
    radius = len(rows) - 1
    table = np.zeros((radius + 1, radius + 1))
    for i, row in enumerate(rows):
        table[i, : i + 1] = row
    offsets = np.abs(np.arange(-radius, radius + 1))
    far, near = np.maximum.outer(offsets, offsets), np.minimum.outer(offsets, offsets)
    return table[far, near]


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array, dtype=np.float64)
    array.setflags(write=False)
    return array


@cache
def _build(name: str) -> SteerableFilterSet:
    table = _TABLES[name]
    order = int(name[2:])
    if "band" in table:
        bands = _from_octant(table["band"])[None]
    else:
        half = np.array(table["bands"], dtype=np.float64)
        bands = np.concatenate([half, np.rot90(half, axes=(1, 2))])
    return SteerableFilterSet(
        name=name,
        order=order,
        highpass0=_readonly(_from_octant(table["highpass0"])),
        lowpass0=_readonly(_from_octant(table["lowpass0"])),
        bands=_readonly(bands),
        lowpass=_readonly(_from_octant(table["lowpass"])),
        energy_tolerance=_ENERGY_TOLERANCE[name],
    )


def get_filter_set(
    filters: str | SteerableFilterSet | None = None,
    *,
    order: int | None = None,
    orientations: int | None = None,
) -> SteerableFilterSet:
    """Look up a published filter set by name, derivative order or number of orientations.

    At most one of the three may be given; with none, the default is ``'sp3'`` (4
    orientations).

    Parameters
    ----------
    filters : {'sp0', 'sp1', 'sp3', 'sp5'} or SteerableFilterSet, optional
        Name of the set (a set passes through unchanged).
    order : {0, 1, 3, 5}, optional
        Derivative order of the band filters.
    orientations : {1, 2, 4, 6}, optional
        Number of oriented bands per level (``order + 1``).

    Returns
    -------
    SteerableFilterSet

    Raises
    ------
    ValueError
        If more than one selector is given or the value names no published set.
    TypeError
        If a selector has the wrong type.

    Examples
    --------
    >>> get_filter_set(orientations=6).name
    'sp5'
    >>> get_filter_set("sp1").bands.shape
    (2, 9, 9)
    """
    given = [
        k
        for k, v in (("filters", filters), ("order", order), ("orientations", orientations))
        if v is not None
    ]
    if len(given) > 1:
        raise ValueError(f"give at most one of filters, order, orientations; got {given}")
    if isinstance(filters, SteerableFilterSet):
        return filters
    if filters is not None:
        if not isinstance(filters, str):
            raise TypeError(f"filters must be a name such as 'sp3', got {type(filters).__name__}")
        if filters not in _TABLES:
            raise ValueError(f"filters must be one of {', '.join(_TABLES)}; got {filters!r}")
        return _build(filters)
    for label, value, offset in (("order", order, 0), ("orientations", orientations, 1)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise TypeError(f"{label} must be an int, got {type(value).__name__}")
        if int(value) - offset not in FILTER_SETS:
            allowed = ", ".join(str(k + offset) for k in FILTER_SETS)
            raise ValueError(f"{label} must be one of {allowed}; got {value}")
        return _build(FILTER_SETS[int(value) - offset])
    return _build("sp3")


# --------------------------------------------------------------------------- steering


def steering_harmonics(order: int) -> tuple[int, ...]:
    """Angular harmonics of a directional derivative of ``order``: ``order, order - 2, …``.

    A derivative of order ``n`` along the angle ``θ`` is a polynomial of degree ``n`` in
    ``cos θ`` and ``sin θ`` with only the harmonics of the parity of ``n``, so ``n + 1`` basis
    filters steer it (Freeman & Adelson 1991).

    Parameters
    ----------
    order : int
        Derivative order, at least 0.

    Returns
    -------
    tuple of int, increasing

    Examples
    --------
    >>> steering_harmonics(3), steering_harmonics(4)
    ((1, 3), (0, 2, 4))
    """
    if isinstance(order, bool) or not isinstance(order, int | np.integer):
        raise TypeError(f"order must be an int, got {type(order).__name__}")
    if order < 0:
        raise ValueError(f"order must be at least 0, got {order}")
    return tuple(range(int(order) % 2, int(order) + 1, 2))


def _harmonic_rows(harmonics: tuple[int, ...], angles: np.ndarray) -> np.ndarray:
    """Rows ``cos(h θ)``, ``sin(h θ)`` (only ``1`` for ``h = 0``), shape (n_rows, *θ.shape)."""
    rows = []
    for h in harmonics:
        rows.append(np.cos(h * angles))
        if h:
            rows.append(np.sin(h * angles))
    return np.stack(rows)


def steering_weights(
    theta: ArrayLike, order: int, basis_angles: ArrayLike | None = None
) -> np.ndarray:
    """Weights that steer ``order + 1`` basis responses to the angle(s) ``theta``.

    If ``f_k`` is the response of the filter of order ``order`` steered to
    ``basis_angles[k]``, the response at ``theta`` is ``Σ_k w[..., k] f_k`` exactly.

    Parameters
    ----------
    theta : float or array_like
        Angle(s) in radians, counter-clockwise from the x axis (image as displayed).
    order : int
        Derivative order ``n`` of the filters (``0`` for isotropic ones).
    basis_angles : array_like, shape (n + 1,), optional
        Angles of the basis filters; default ``π k / (n + 1)``. They must be distinct modulo
        ``π``.

    Returns
    -------
    ndarray, shape theta.shape + (n + 1,), float64

    Raises
    ------
    ValueError
        If the basis does not have ``n + 1`` angles or cannot steer (repeated angles).

    Examples
    --------
    >>> np.round(steering_weights(np.pi / 3, 1), 6)  # cos α, sin α
    array([0.5     , 0.866025])
    """
    harmonics = steering_harmonics(order)
    n_basis = int(order) + 1
    if basis_angles is None:
        basis = np.pi * np.arange(n_basis) / n_basis
    else:
        basis = np.asarray(basis_angles, dtype=np.float64).ravel()
        if basis.size != n_basis:
            raise ValueError(
                f"basis_angles must hold order + 1 = {n_basis} angles, got {basis.size}"
            )
    matrix = _harmonic_rows(harmonics, basis)  # (n + 1, n + 1): harmonics at basis angles
    if np.linalg.cond(matrix) > 1e8:
        raise ValueError(f"basis_angles {basis.tolist()} cannot steer order {order}")
    theta = np.asarray(theta, dtype=np.float64)
    targets = _harmonic_rows(harmonics, theta).reshape(n_basis, -1)
    weights = np.linalg.solve(matrix, targets)  # matrix @ w = harmonics at θ
    return weights.T.reshape((*theta.shape, n_basis))


def _check_sigma_radius(sigma: float, radius: int | None, order: int) -> tuple[float, int]:
    sigma = float(sigma)
    if not np.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    if radius is None:
        radius = int(np.ceil((3.0 + 0.5 * order) * sigma))
    if isinstance(radius, bool) or not isinstance(radius, int | np.integer) or radius < 1:
        raise ValueError(f"radius must be a positive int, got {radius!r}")
    return sigma, int(radius)


def gaussian_derivative(
    order: int, angle: float, sigma: float = 1.0, radius: int | None = None
) -> np.ndarray:
    """Sample the directional derivative of order ``n`` of a 2-D Gaussian at ``angle``.

    With ``t = x cos α + y sin α`` (x right, y up) the filter is
    ``∂ⁿg/∂tⁿ = (-1/σ)ⁿ Heₙ(t/σ) g(x, y)``, ``g`` the unit-mass Gaussian of width ``σ`` and
    ``Heₙ`` the probabilists' Hermite polynomial. For ``n = 1``,
    ``gaussian_derivative(1, α) = cos α · g_x + sin α · g_y``.

    Parameters
    ----------
    order : int
        Derivative order ``n ≥ 0``.
    angle : float
        Direction ``α`` in radians, counter-clockwise from the x axis.
    sigma : float
        Standard deviation of the Gaussian in pixels.
    radius : int, optional
        Half-width of the kernel; default ``ceil((3 + n/2) σ)``.

    Returns
    -------
    ndarray, shape (2 radius + 1, 2 radius + 1), float64
        The sampled function (row index grows downwards, so ``y = -row offset``). Used as
        a convolution kernel (``scipy.ndimage.convolve``) it differentiates the smoothed
        image; as a correlation kernel it gives ``(-1)ⁿ`` times that.

    Examples
    --------
    >>> gx = gaussian_derivative(1, 0.0)
    >>> bool(gx[4, 5] < 0 < gx[4, 3])  # ∂g/∂x is negative where x > 0
    True
    """
    steering_harmonics(order)  # validates order
    sigma, radius = _check_sigma_radius(sigma, radius, int(order))
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    x, y = offsets[None, :], -offsets[:, None]
    t = (x * np.cos(angle) + y * np.sin(angle)) / sigma
    gauss = np.exp(-(x**2 + y**2) / (2 * sigma**2)) / (2 * np.pi * sigma**2)
    hermite = np.polynomial.hermite_e.hermeval(t, [0.0] * int(order) + [1.0])
    return (-1.0 / sigma) ** int(order) * hermite * gauss


def gaussian_derivative_basis(
    order: int, sigma: float = 1.0, radius: int | None = None
) -> np.ndarray:
    """The ``n + 1`` Gaussian-derivative basis filters at the angles ``π k / (n + 1)``.

    Steer them with :func:`steering_weights`: ``Σ_k w_k(α) basis[k]`` equals
    ``gaussian_derivative(order, α)`` up to rounding, for any ``α``.

    Parameters
    ----------
    order, sigma, radius
        As for :func:`gaussian_derivative`.

    Returns
    -------
    ndarray, shape (order + 1, 2 radius + 1, 2 radius + 1), float64

    Examples
    --------
    >>> basis = gaussian_derivative_basis(2, sigma=1.5)
    >>> w = steering_weights(0.3, 2)
    >>> bool(np.allclose(np.tensordot(w, basis, 1), gaussian_derivative(2, 0.3, sigma=1.5)))
    True
    """
    steering_harmonics(order)
    angles = np.pi * np.arange(int(order) + 1) / (int(order) + 1)
    return np.stack([gaussian_derivative(order, a, sigma, radius) for a in angles])


# --------------------------------------------------------------------------- tables
# Numbers from matlabPyrTools (sp0Filters.m, sp1Filters.m, sp3Filters.m, sp5Filters.m),
# E. P. Simoncelli; octants ``[i][j]`` (``j ≤ i``, offsets from the centre) for the
# square-symmetric filters, full arrays for the first half of the oriented bands.

_SP0 = {
    "highpass0": [
        [0.8554893],
        [-0.09623594, -0.06300923],
        [-0.02420138, -0.01437358, -0.00161665],
        [-0.00037321, 0.00014597, 0.00049271, 0.00012631],
        [-0.00024066, -0.00033256, -0.00033249, -6.068e-05, 0.00059972],
    ],
    "lowpass0": [
        [0.3153017],
        [0.1524935, 0.06441488],
        [-0.0075632, -0.0134416, -0.00611952],
        [-0.00374386, -0.00037258, -0.00011371, -0.0004514],
    ],
    "lowpass": [
        [0.1576508],
        [0.1348999, 0.1116388],
        [0.07624674, 0.06306262, 0.03220744],
        [0.024496, 0.01722078, 0.00393862, -0.00526002],
        [-0.0037816, -0.00523618, -0.0067208, -0.006401, -0.00305976],
        [-0.0069489, -0.00700674, -0.00459642, -0.00244906, -0.00019038, 0.00141762],
        [-0.00187192, -0.00103164, -0.00018628, 0.00087414, -5.686e-05, -0.00080644, -0.0002257],
    ],
    "band": [
        [0.9464195],
        [-0.03158605, -0.01730466],
        [-0.03487008, -0.02435662, -0.0212954],
        [-0.00909195, -0.00762341, -0.00727254, -0.00462515],
        [-0.01009473, -0.00788939, -0.0049425, -0.00173864, -9.066e-05],
    ],
}

_SP1 = {
    "highpass0": [
        [0.7282593],
        [-0.1562827, -0.0784137],
        [-0.00589778, 0.01094866, 0.01706347],
        [0.01098012, 0.00915642, 0.00089986, -0.00431753],
        [-0.00116681, -0.00087426, -0.00142472, -0.00024241, -0.000957],
    ],
    "lowpass0": [
        [0.437625],
        [0.1811603, 0.0438132],
        [-0.03297137, -0.03769487, -0.00706129],
        [0.00110762, 0.00822442, 0.00752272, 0.00292158],
        [0.00252401, -0.00050337, -0.00160126, -0.00135428, -8.701e-05],
    ],
    "lowpass": [
        [0.2120374],
        [0.1773651, 0.14455],
        [0.09058014, 0.06806584, 0.0219066],
        [0.01438512, 0.00395566, -0.0110917, -0.02022938],
        [-0.01648568, -0.01750818, -0.01884744, -0.0126042, -0.00353064],
        [-0.00963722, -0.00905692, -0.0074317, -0.00177748, 0.00318468, 0.00317578],
        [0.00055382, 0.00222122, 0.0041122, 0.00308098, 0.00376136, 0.00216054, 0.00146078],
        [
            0.0055894,
            0.00428728,
            0.00288986,
            0.00232554,
            -0.00013688,
            0.00056216,
            -0.00058146,
            0.00044606,
        ],
        [
            0.001262,
            -0.0004202,
            -0.00025168,
            -0.00159704,
            -0.00080064,
            -0.00012434,
            -0.00067714,
            0.00012078,
            -4.35e-05,
        ],
    ],
    "bands": [
        [
            [
                -0.00612588,
                0.01287416,
                0.00564153,
                0.00895726,
                0.0,
                -0.00895726,
                -0.00564153,
                -0.01287416,
                0.00612588,
            ],
            [
                0.0080526,
                0.00961152,
                -0.0041684,
                0.00175117,
                0.0,
                -0.00175117,
                0.0041684,
                -0.00961152,
                -0.0080526,
            ],
            [
                0.02103714,
                -0.01023569,
                0.0238218,
                0.01836909,
                0.0,
                -0.01836909,
                -0.0238218,
                0.01023569,
                -0.02103714,
            ],
            [
                0.0153689,
                -0.00600945,
                0.05375324,
                -0.1265655,
                0.0,
                0.1265655,
                -0.05375324,
                0.00600945,
                -0.0153689,
            ],
            [
                0.01851466,
                -0.00187262,
                0.02076086,
                -0.2996168,
                0.0,
                0.2996168,
                -0.02076086,
                0.00187262,
                -0.01851466,
            ],
            [
                0.0153689,
                -0.00600945,
                0.05375324,
                -0.1265655,
                0.0,
                0.1265655,
                -0.05375324,
                0.00600945,
                -0.0153689,
            ],
            [
                0.02103714,
                -0.01023569,
                0.0238218,
                0.01836909,
                0.0,
                -0.01836909,
                -0.0238218,
                0.01023569,
                -0.02103714,
            ],
            [
                0.0080526,
                0.00961152,
                -0.0041684,
                0.00175117,
                0.0,
                -0.00175117,
                0.0041684,
                -0.00961152,
                -0.0080526,
            ],
            [
                -0.00612588,
                0.01287416,
                0.00564153,
                0.00895726,
                0.0,
                -0.00895726,
                -0.00564153,
                -0.01287416,
                0.00612588,
            ],
        ],
    ],
}

_SP3 = {
    "highpass0": [
        [0.7303866148],
        [-0.1554141641, -0.079501636326],
        [-0.0093812197447, 0.0078046298586, 0.013962360099],
        [0.0073032598011, 0.0053632198833, -0.0027556000277, -0.0063222697936],
        [-0.0051014497876, -0.0045751798898, -0.0031295299996, -0.00049274001503, 0.0012960999738],
        [
            -0.00083368999185,
            0.00033578000148,
            0.0021145299543,
            0.0022253401112,
            0.0014050999889,
            0.0011793200392,
        ],
        [
            0.0019755100366,
            0.0022892199922,
            0.0025626500137,
            0.0021750701126,
            0.0015874400269,
            0.00077435001731,
            -0.00032734998967,
        ],
        [
            0.0020898699295,
            0.0020687500946,
            0.0019235999789,
            0.0015450799838,
            0.00088387000142,
            -3.7829999201e-05,
            -0.00062596000498,
            -0.000404839986,
        ],
    ],
    "lowpass0": [
        [0.4376249909],
        [0.181160301, 0.043813198805],
        [-0.032971370965, -0.037694871426, -0.007061290089],
        [0.0011076199589, 0.0082244202495, 0.0075227199122, 0.0029215801042],
        [0.0025240099058, -0.00050337001448, -0.001601260039, -0.0013542800443, -8.7009997515e-05],
    ],
    "lowpass": [
        [0.2120374441],
        [0.1773651242, 0.1445499808],
        [0.090580143034, 0.068065837026, 0.021906599402],
        [0.014385120012, 0.0039556599222, -0.011091699824, -0.020229380578],
        [-0.016485679895, -0.017508180812, -0.018847439438, -0.012604200281, -0.0035306399222],
        [
            -0.0096372198313,
            -0.0090569201857,
            -0.0074316998944,
            -0.0017774800071,
            0.0031846798956,
            0.0031757799443,
        ],
        [
            0.00055381999118,
            0.0022212199401,
            0.0041121998802,
            0.0030809799209,
            0.0037613599561,
            0.0021605400834,
            0.0014607800404,
        ],
        [
            0.0055893999524,
            0.0042872801423,
            0.0028898599558,
            0.0023255399428,
            -0.00013688000035,
            0.00056215998484,
            -0.00058146001538,
            0.00044606000301,
        ],
        [
            0.001261999947,
            -0.00042019999819,
            -0.00025168000138,
            -0.0015970399836,
            -0.00080063997302,
            -0.00012434000382,
            -0.00067714002216,
            0.00012078000145,
            -4.3500000174e-05,
        ],
    ],
    "bands": [
        [
            [
                -0.00081125000725,
                0.0039103501476,
                0.0013462699717,
                0.00074700999539,
                0.0,
                -0.00074700999539,
                -0.0013462699717,
                -0.0039103501476,
                0.00081125000725,
            ],
            [
                0.0044451598078,
                0.004456540104,
                -0.0037740699481,
                -0.00036522001028,
                0.0,
                0.00036522001028,
                0.0037740699481,
                -0.004456540104,
                -0.0044451598078,
            ],
            [
                0.012316980399,
                -0.0058724298142,
                0.0082581602037,
                -0.022522680461,
                0.0,
                0.022522680461,
                -0.0082581602037,
                0.0058724298142,
                -0.012316980399,
            ],
            [
                0.013955879956,
                -0.0028760801069,
                0.039442278445,
                -0.1105690673,
                0.0,
                0.1105690673,
                -0.039442278445,
                0.0028760801069,
                -0.013955879956,
            ],
            [
                0.01417945046,
                0.0085267601535,
                0.053605638444,
                -0.1768419296,
                0.0,
                0.1768419296,
                -0.053605638444,
                -0.0085267601535,
                -0.01417945046,
            ],
            [
                0.013955879956,
                -0.0028760801069,
                0.039442278445,
                -0.1105690673,
                0.0,
                0.1105690673,
                -0.039442278445,
                0.0028760801069,
                -0.013955879956,
            ],
            [
                0.012316980399,
                -0.0058724298142,
                0.0082581602037,
                -0.022522680461,
                0.0,
                0.022522680461,
                -0.0082581602037,
                0.0058724298142,
                -0.012316980399,
            ],
            [
                0.0044451598078,
                0.004456540104,
                -0.0037740699481,
                -0.00036522001028,
                0.0,
                0.00036522001028,
                0.0037740699481,
                -0.004456540104,
                -0.0044451598078,
            ],
            [
                -0.00081125000725,
                0.0039103501476,
                0.0013462699717,
                0.00074700999539,
                0.0,
                -0.00074700999539,
                -0.0013462699717,
                -0.0039103501476,
                0.00081125000725,
            ],
        ],
        [
            [
                0.0,
                0.00082846998703,
                5.7109999034e-05,
                -4.0110000555e-05,
                -0.0046670897864,
                -0.0080871898681,
                -0.014807609841,
                -0.0086204400286,
                0.0031221499667,
            ],
            [
                -0.00082846998703,
                0.0,
                0.00097479997203,
                0.0069718998857,
                0.002086560009,
                -0.002329879906,
                0.0044814897701,
                -0.014917500317,
                -0.0086204400286,
            ],
            [
                -5.7109999034e-05,
                -0.00097479997203,
                0.0,
                0.012145539746,
                0.024427289143,
                -0.050797060132,
                -0.032785870135,
                0.0044814897701,
                -0.014807609841,
            ],
            [
                4.0110000555e-05,
                -0.0069718998857,
                -0.012145539746,
                0.0,
                0.1510555595,
                0.082495503128,
                -0.050797060132,
                -0.002329879906,
                -0.0080871898681,
            ],
            [
                0.0046670897864,
                -0.002086560009,
                -0.024427289143,
                -0.1510555595,
                0.0,
                0.1510555595,
                0.024427289143,
                0.002086560009,
                -0.0046670897864,
            ],
            [
                0.0080871898681,
                0.002329879906,
                0.050797060132,
                -0.082495503128,
                -0.1510555595,
                0.0,
                0.012145539746,
                0.0069718998857,
                -4.0110000555e-05,
            ],
            [
                0.014807609841,
                -0.0044814897701,
                0.032785870135,
                0.050797060132,
                -0.024427289143,
                -0.012145539746,
                0.0,
                0.00097479997203,
                5.7109999034e-05,
            ],
            [
                0.0086204400286,
                0.014917500317,
                -0.0044814897701,
                0.002329879906,
                -0.002086560009,
                -0.0069718998857,
                -0.00097479997203,
                0.0,
                0.00082846998703,
            ],
            [
                -0.0031221499667,
                0.0086204400286,
                0.014807609841,
                0.0080871898681,
                0.0046670897864,
                4.0110000555e-05,
                -5.7109999034e-05,
                -0.00082846998703,
                0.0,
            ],
        ],
    ],
}

_SP5 = {
    "highpass0": [
        [0.813802],
        [-0.11435863, -0.07027679],
        [-0.00981051, -0.00673482, -0.00290081],
        [0.01261227, 0.00631653, -0.00243812, -0.00350017],
        [-0.00080639, -0.00133542, -0.00171484, -0.00113093, -0.00033429],
    ],
    "lowpass0": [
        [0.40304148],
        [0.1592557, 0.05586982],
        [-0.03848215, -0.01551246, 0.00341614],
    ],
    "lowpass": [
        [0.2019308],
        [0.16339236, 0.12852666],
        [0.07962786, 0.06554076, 0.02793492],
        [0.02005976, 0.008212, -0.01322234, -0.01046562],
        [-0.01924108, -0.01888864, -0.00775624, -0.00489834, 0.00170808],
    ],
    "bands": [
        [
            [0.00277643, -0.00986904, -0.01021852, 0.0, 0.01021852, 0.00986904, -0.00277643],
            [0.00496194, -0.00893064, -0.03075356, 0.0, 0.03075356, 0.00893064, -0.00496194],
            [0.01026699, 0.01189859, -0.08226445, 0.0, 0.08226445, -0.01189859, -0.01026699],
            [0.01455399, 0.02755155, -0.11732297, 0.0, 0.11732297, -0.02755155, -0.01455399],
            [0.01026699, 0.01189859, -0.08226445, 0.0, 0.08226445, -0.01189859, -0.01026699],
            [0.00496194, -0.00893064, -0.03075356, 0.0, 0.03075356, 0.00893064, -0.00496194],
            [0.00277643, -0.00986904, -0.01021852, 0.0, 0.01021852, 0.00986904, -0.00277643],
        ],
        [
            [-0.00343249, -0.00358461, 0.01047717, 0.00790407, 0.00459034, -0.00128, -0.01166982],
            [
                -0.00640815,
                -0.01977507,
                0.01486305,
                0.04435647,
                -0.00853965,
                -0.01161195,
                -0.00285723,
            ],
            [
                -0.00073141,
                -0.04084211,
                -0.04819057,
                0.09454202,
                0.05394139,
                -0.03930573,
                -0.00182078,
            ],
            [0.01124321, -0.00228219, -0.1222723, 0.0, 0.1222723, 0.00228219, -0.01124321],
            [0.00182078, 0.03930573, -0.05394139, -0.09454202, 0.04819057, 0.04084211, 0.00073141],
            [0.00285723, 0.01161195, 0.00853965, -0.04435647, -0.01486305, 0.01977507, 0.00640815],
            [0.01166982, 0.00128, -0.00459034, -0.00790407, -0.01047717, 0.00358461, 0.00343249],
        ],
        [
            [
                0.00343249,
                0.00640815,
                0.00073141,
                -0.01124321,
                -0.00182078,
                -0.00285723,
                -0.01166982,
            ],
            [0.00358461, 0.01977507, 0.04084211, 0.00228219, -0.03930573, -0.01161195, -0.00128],
            [-0.01047717, -0.01486305, 0.04819057, 0.1222723, 0.05394139, -0.00853965, 0.00459034],
            [-0.00790407, -0.04435647, -0.09454202, 0.0, 0.09454202, 0.04435647, 0.00790407],
            [
                -0.00459034,
                0.00853965,
                -0.05394139,
                -0.1222723,
                -0.04819057,
                0.01486305,
                0.01047717,
            ],
            [0.00128, 0.01161195, 0.03930573, -0.00228219, -0.04084211, -0.01977507, -0.00358461],
            [
                0.01166982,
                0.00285723,
                0.00182078,
                0.01124321,
                -0.00073141,
                -0.00640815,
                -0.00343249,
            ],
        ],
    ],
}

_TABLES = {"sp0": _SP0, "sp1": _SP1, "sp3": _SP3, "sp5": _SP5}
