"""PII — Poisson image interpolation (Tan et al. 2021), solved exactly with a sine transform.

Inside a box the result ``f`` solves ``Δf = (1 − α)·Δx + α·Δy`` (the interpolated gradient field
of the target ``x`` and a foreign normal ``y``) with ``f = x`` on the box's border, so the patch
carries the source's structure while meeting the target seamlessly. Writing ``f = x + g``, ``g``
solves ``Δg = α·(Δy − Δx)`` with zero border values: a Dirichlet Poisson problem diagonalised by
the type-I discrete sine transform — no loops, no sparse solve.
"""

from __future__ import annotations

import numpy as np
from scipy.fft import dstn, idstn


def laplacian(image: np.ndarray) -> np.ndarray:
    """5-point discrete Laplacian at interior pixels ([H−2, W−2])."""
    return image[:-2, 1:-1] + image[2:, 1:-1] + image[1:-1, :-2] + image[1:-1, 2:] - 4 * image[1:-1, 1:-1]


def solve_dirichlet_poisson(rhs: np.ndarray) -> np.ndarray:
    """``g`` with ``Δg = rhs`` on a grid whose surrounding border is 0 (5-point stencil)."""
    rows, cols = rhs.shape
    eig_r = 2 * np.cos(np.pi * np.arange(1, rows + 1) / (rows + 1)) - 2
    eig_c = 2 * np.cos(np.pi * np.arange(1, cols + 1) / (cols + 1)) - 2
    return idstn(dstn(rhs, type=1) / (eig_r[:, None] + eig_c[None, :]), type=1)


def poisson_blend(target: np.ndarray, source: np.ndarray, alpha: float) -> np.ndarray:
    """Blend same-shaped patches: border from ``target``, interior Laplacian interpolated."""
    blended = target.astype(np.float64, copy=True)
    rhs = alpha * (laplacian(source.astype(np.float64)) - laplacian(blended))
    blended[1:-1, 1:-1] += solve_dirichlet_poisson(rhs)
    return blended
