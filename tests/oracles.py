"""Helpers shared by the tests: tolerances and optional peers."""
import numpy as np


def tol(dtype, reduction=1):
    """(rtol, atol) against a float64 oracle whose outputs are O(1); float32's absolute
    tolerance grows with the square root of the reduction length."""
    if np.dtype(dtype) == np.float64:
        return 1e-10, 1e-10
    return 1e-4, 1e-6 * 8 * max(1, reduction) ** 0.5


def torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    return torch
