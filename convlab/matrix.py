"""Convolution as a matrix: patch matrices (im2col/col2im) and the sparse operator (section 9.2)."""
from __future__ import annotations

import math

import numpy as np

from . import _params as P
from ._backend import kernels_unavailable
from .cuda import matrix as cuda_matrix
from .reference.im2col import col2im_into, patch_matrix
from .reference.windows import pad, taps, unpad


def _window_geometry(spatial, kernel_size, stride, padding, dilation, nd):
    kernel = P.ntuple(kernel_size, nd, "kernel_size", minimum=1)
    stride = P.ntuple(stride, nd, "stride", minimum=1)
    dilation = P.ntuple(dilation, nd, "dilation", minimum=1)
    pads = P.parse_padding(padding, nd, kernel=kernel, stride=stride, dilation=dilation, in_size=spatial)
    return P.make_geometry(spatial, kernel, stride, dilation, pads)


def im2col(x, kernel_size, stride=1, padding=0, dilation=1):
    """Patch matrix of ``x``: every (dilated, strided) window as a column.

    Shapes: ``x (N, C, *n)`` with any number of spatial dims -> ``(N, C*prod(k), L)``,
    ``L = prod(out)``; row ``c*prod(k) + m`` (tap ``m`` row-major) of column ``j`` is
    ``V_pad[n, c, j*s + m*d]`` (PyTorch's ``unfold`` layout). CuPy arrays with 1 or 2 spatial
    dims run on the CUDA kernel when the extension is built.
    """
    P.check_array(x, "x")
    if x.ndim < 3:
        raise ValueError(f"x must have at least 3 dims (N, C, *spatial), got shape {tuple(x.shape)}")
    nd = x.ndim - 2
    geom = _window_geometry(tuple(x.shape[2:]), kernel_size, stride, padding, dilation, nd)
    if kernels_unavailable(x, nd) is None:
        return cuda_matrix.im2col(x, geom)
    xpad = pad(x, geom)
    cols = patch_matrix(xpad.reshape(xpad.shape[:1] + (1,) + xpad.shape[1:]), geom)
    return cols.reshape(x.shape[0], x.shape[1] * math.prod(geom.kernel), cols.shape[-1])


def col2im(cols, output_size, kernel_size, stride=1, padding=0, dilation=1):
    """Adjoint of :func:`im2col`: sum each column back onto the window it came from.

    Shapes: ``cols (N, C*prod(k), L)`` -> ``(N, C, *output_size)`` (PyTorch's ``fold``).
    """
    xp = P.check_array(cols, "cols")
    if not isinstance(output_size, (tuple, list)) or not output_size:
        raise TypeError(f"output_size must be a tuple of spatial sizes, got {output_size!r}")
    if isinstance(kernel_size, (tuple, list)) and len(kernel_size) != len(output_size):
        raise ValueError(f"output_size must hold the {len(kernel_size)} spatial sizes of the image, one per "
                         f"kernel_size entry {tuple(kernel_size)}, got {tuple(output_size)} (the spatial size "
                         "only, not the (N, C, *spatial) shape)")
    output_size = P.ntuple(tuple(output_size), len(output_size), "output_size", minimum=1)
    nd = len(output_size)
    geom = _window_geometry(output_size, kernel_size, stride, padding, dilation, nd)
    kk, length = math.prod(geom.kernel), math.prod(geom.out_size)
    if cols.ndim != 3 or cols.shape[1] % kk or cols.shape[2] != length:
        raise ValueError(f"cols must have shape (N, C*{kk}, {length}) for output_size {output_size} and "
                         f"kernel {geom.kernel}, got {tuple(cols.shape)}")
    n, c = cols.shape[0], cols.shape[1] // kk
    if kernels_unavailable(cols, nd) is None:
        return cuda_matrix.col2im(cols, geom, n, c)
    gpad = xp.zeros((n, 1, c) + geom.padded_size, dtype=cols.dtype)
    col2im_into(gpad, cols.reshape(n, 1, c * kk, length), geom)
    return xp.ascontiguousarray(unpad(gpad, geom)).reshape((n, c) + output_size)


def conv_matrix(input_shape, w, stride=1, padding=0, dilation=1, groups=1, *, flip=False):
    """The convolution ``conv(x, w, ...)`` as a ``scipy.sparse.csr_matrix`` M with ``y.ravel() = M @ x.ravel()``.

    ``input_shape`` is ``(C, *n)`` for one sample, giving M of shape
    ``(K*prod(out), C*prod(n))``, or ``(N, C, *n)``, giving the block-diagonal matrix for the
    batch. Each row holds one output's kernel weights (sparse interactions) and every row of
    a channel holds the same weights (parameter sharing); ``M.T`` is the input gradient.
    """
    import scipy.sparse as sp

    P.check_array(w, "w", np)
    input_shape = tuple(int(v) for v in input_shape)
    nd = w.ndim - 2
    batch = None
    if len(input_shape) == nd + 2:
        batch, input_shape = input_shape[0], input_shape[1:]
    elif len(input_shape) != nd + 1:
        raise ValueError(f"input_shape must be (C, *n) or (N, C, *n) with {nd} spatial dims for w of shape "
                         f"{tuple(w.shape)}, got {input_shape}")
    args = P.conv_shape_args((1,) + input_shape, tuple(w.shape), stride, padding, dilation, groups, nd)
    if flip:
        w = w[(Ellipsis,) + (slice(None, None, -1),) * nd]
    geom, g = args.geom, args.groups
    kg, cg = args.out_channels // g, args.in_channels // g
    n_in, n_out = math.prod(geom.in_size), math.prod(geom.out_size)
    j = np.indices(geom.out_size).reshape(nd, -1)  # (nd, P)
    k = np.arange(args.out_channels)
    c_local = np.arange(cg)
    rows, cols, vals = [], [], []
    for tap in taps(geom):
        i = [j[a] * geom.stride[a] + tap[a] * geom.dilation[a] - geom.pad[a][0] for a in range(nd)]
        ok = np.all([(ia >= 0) & (ia < geom.in_size[a]) for a, ia in enumerate(i)], axis=0)
        jf = np.flatnonzero(ok)
        i_flat = np.ravel_multi_index(tuple(ia[ok] for ia in i), geom.in_size) if len(jf) else jf
        c_glob = (k // kg)[:, None] * cg + c_local[None, :]  # (K, C_g)
        shape = (args.out_channels, cg, len(jf))
        rows.append(np.broadcast_to((k[:, None, None] * n_out + jf[None, None, :]), shape).ravel())
        cols.append(np.broadcast_to(c_glob[:, :, None] * n_in + i_flat[None, None, :], shape).ravel())
        vals.append(np.broadcast_to(w[(Ellipsis,) + tuple(tap)][:, :, None], shape).ravel())
    m = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(args.out_channels * n_out, args.in_channels * n_in))
    if batch is not None:
        m = sp.kron(sp.identity(batch, dtype=w.dtype, format="csr"), m, format="csr")
    return m
