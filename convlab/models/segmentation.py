"""A recurrent convolutional network for pixel-wise labelling (section 9.6, Fig. 9.17, after
Pinheiro & Collobert 2014), and the scenes it labels.

With ``*`` the convolution (zero padding so that every plane keeps the input's size) and the
kernels ``U``, ``V``, ``W`` shared by every step::

    H(t) = relu(U(X) + W * Y(t-1))       Y(0) = 0
    Y(t) = softmax(V * H(t) + c)

``U(X)`` is the book's ``U * X`` made two layers deep (conv, ReLU, dilated conv) so that a
pixel's first label already sees a part of its item; it is computed once. Each step sees the
previous step's labels through ``W``, so its receptive field grows by ``W``'s span: later
steps can use more of the image to label each pixel.
"""
from __future__ import annotations

import numpy as np

from .. import nn
from ..nn import functional as F


class RecurrentLabeller(nn.Module):
    """Input ``(N, in_channels, H, W)`` -> a list of ``steps`` score planes ``(N, classes, H, W)``
    (``Y(t)`` before the softmax), for any ``H, W``: every convolution is 'same'-padded."""

    def __init__(self, in_channels=1, classes=11, hidden=16, kernel=5, feedback_kernel=5, feedback_dilation=2,
                 steps=3):
        super().__init__()
        for name, value in dict(kernel=kernel, feedback_kernel=feedback_kernel).items():
            if value % 2 != 1:
                raise ValueError(f"{name} must be odd so that the output plane equals the input plane, got {value}")
        self.steps = steps
        self.U = nn.Sequential(nn.Conv2d(in_channels, hidden, kernel, padding=kernel // 2), nn.ReLU(),
                               nn.Conv2d(hidden, hidden, kernel, padding=2 * (kernel // 2), dilation=2))
        self.W = nn.Conv2d(classes, hidden, feedback_kernel, padding=feedback_dilation * (feedback_kernel // 2),
                           dilation=feedback_dilation, bias=False)
        self.V = nn.Conv2d(hidden, classes, 1)

    def forward(self, x, steps=None):
        ux = self.U(x)  # the same every step
        scores = []
        h = F.relu(ux)
        for t in range(steps or self.steps):
            if t:
                h = F.relu(ux + self.W(F.softmax(scores[-1], dim=1)))
            scores.append(self.V(h))
        return scores


def loss(scores, target):
    """Mean over the steps of the pixel-wise cross-entropy: every step learns to label."""
    total = F.cross_entropy(scores[0], target)
    for s in scores[1:]:
        total = total + F.cross_entropy(s, target)
    return total / len(scores)


def pixel_accuracy(scores, target):
    """Fraction of pixels whose argmax label equals ``target (N, H, W)``, for each step."""
    return [float((s.data.argmax(axis=1) == target).mean()) for s in scores]
