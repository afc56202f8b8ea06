"""The NumPy reference: readable implementations of chapter 9, written against an array
module ``xp`` so that CuPy arrays run through the same code on the GPU.

- :mod:`.windows`: the windowing primitive (padding, sliding windows, their adjoint).
- :mod:`.phases`: the stride-phase grid that direct and im2col compute on, and the
  :class:`~.phases.Plan` that cuts their work into chunks (and counts it for the cost model).
- :mod:`.groups`: channel-group views and the products over them.
- :mod:`.naive`: the loop oracle (eq. 9.7/9.8 written out).
- :mod:`.direct`, :mod:`.im2col`: the convolution as matrix products on the phase grid;
  they hand 1x1 kernels to :mod:`.pointwise`, small patches to :mod:`.small`, and im2col
  its strided layers to :mod:`.patches` (on the channel-last copy of :mod:`.layout`).
- :mod:`.fft`, :mod:`.separable`, :mod:`.winograd`: the fast algorithms (docs/algorithms.md).
- :mod:`.local`: locally connected and tiled convolution (eq. 9.9, 9.10).
- :mod:`.pool`: max, average, Lp, maxout and adaptive pooling (section 9.3).
"""
