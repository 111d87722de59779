"""Multi-scale image analysis on sparse operators.

Gaussian and Laplacian pyramids whose blur-and-downsample ``G`` and upsample-and-blur ``F``
are ``scipy.sparse`` matrices (docs/design.md §1–2), exact reconstruction, Laplacian pyramid
blending (§3), the steerable pyramid of Simoncelli & Freeman with steering (§4), and the
frequency-domain and complex steerable pyramids of Portilla & Simoncelli (§6).

Examples
--------
>>> import numpy as np, pyramids
>>> x = np.random.default_rng(0).random((64, 48)).astype(np.float32)
>>> pyr = pyramids.laplacian_pyramid(x, levels=3)
>>> [band.shape for band in pyr.bands], pyr.residual.shape
([(64, 48), (32, 24), (16, 12)], (8, 6))
>>> bool(np.abs(pyr.reconstruct() - x).max() < 1e-5)
True
"""

from .blend import blend
from .io import read_image, write_image
from .kernels import binomial_kernel, burt_adelson_kernel
from .laplacian import (
    GaussianPyramid,
    LaplacianPyramid,
    default_levels,
    gaussian_pyramid,
    laplacian_pyramid,
    max_levels,
    reconstruct_laplacian,
    reconstruction_error_bound,
)
from .operators import (
    BOUNDARIES,
    apply_separable,
    blur_downsample_matrix,
    expand,
    expand_matrix,
    reduce,
    reduce_matrix,
    upsample_blur_matrix,
)
from .pyramid import Pyramid, PyramidFileError, load_pyramid
from .steerable import (
    SteerablePyramid,
    analysis_matrix,
    max_steerable_levels,
    steer,
    steerable_pyramid,
)
from .steerable_filters import gaussian_derivative, get_filter_set, steering_weights
from .steerable_freq import (
    FrequencySteerableModel,
    FrequencySteerablePyramid,
    frequency_analysis_matrix,
    max_frequency_levels,
    steerable_pyramid_freq,
)

__version__ = "0.1.0"

__all__ = [
    "BOUNDARIES",
    "FrequencySteerableModel",
    "FrequencySteerablePyramid",
    "GaussianPyramid",
    "LaplacianPyramid",
    "Pyramid",
    "PyramidFileError",
    "SteerablePyramid",
    "__version__",
    "analysis_matrix",
    "apply_separable",
    "binomial_kernel",
    "blend",
    "blur_downsample_matrix",
    "burt_adelson_kernel",
    "default_levels",
    "expand",
    "expand_matrix",
    "frequency_analysis_matrix",
    "gaussian_derivative",
    "gaussian_pyramid",
    "get_filter_set",
    "laplacian_pyramid",
    "load_pyramid",
    "max_frequency_levels",
    "max_levels",
    "max_steerable_levels",
    "read_image",
    "reconstruct_laplacian",
    "reconstruction_error_bound",
    "reduce",
    "reduce_matrix",
    "steer",
    "steerable_pyramid",
    "steerable_pyramid_freq",
    "steering_weights",
    "upsample_blur_matrix",
    "write_image",
]
