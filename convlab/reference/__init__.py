"""The NumPy reference: readable implementations of chapter 9, written against an array
module ``xp`` so that CuPy arrays run through the same code on the GPU.

- :mod:`.windows`: the windowing primitive (padding, sliding windows, their adjoint, and
  the stride phases the fast algorithms read).
- :mod:`.naive`: the loop oracle (eq. 9.7/9.8 written out).
- :mod:`.direct`, :mod:`.im2col`: the convolution as matrix products on the phase layout.
- :mod:`.fft`, :mod:`.separable`, :mod:`.winograd`: the fast algorithms (docs/algorithms.md).
- :mod:`.local`: locally connected and tiled convolution (eq. 9.9, 9.10).
- :mod:`.pool`: max, average, Lp, maxout and adaptive pooling (section 9.3).
"""
