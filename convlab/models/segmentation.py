"""A recurrent convolutional network for pixel-wise labelling (section 9.6, Fig. 9.17, after
Pinheiro & Collobert 2014), and the scores that say how well it labels.

With ``*`` the convolution (padded so that every plane keeps the input's size) and the
kernels ``U``, ``V``, ``W`` shared by every step::

    H(t) = relu(U(X) + W * Y(t-1))       Y(0) = 0
    Y(t) = softmax(V * H(t) + c)

``U(X)`` is the book's ``U * X`` made deep enough to tell the items apart: a small conv net
(conv, two 2x2 max pools, convs at a quarter of the resolution, a stride-4 transposed conv
back to the input plane, plus a full-resolution path for the edges); it is computed once.
Each step sees the previous step's labels through ``W`` (a dilated kernel spanning 17
pixels by default), so a pixel's later labels can use its neighbours' earlier ones.
"""
from __future__ import annotations

import numpy as np

from .. import nn
from ..nn import functional as F

CLASSES = 11  # background and the ten item classes of data.scenes


def _block(cin, cout, kernel, dilation=1):
    return [nn.Conv2d(cin, cout, kernel, padding=dilation * (kernel // 2), dilation=dilation),
            nn.BatchNorm2d(cout), nn.ReLU()]


class Encoder(nn.Module):
    """``U(X)``: ``(N, in_channels, H, W)`` -> ``(N, hidden, H, W)`` for any ``H, W``.

    Full resolution: one conv block (``width`` channels). Half resolution, after a 2x2 max
    pool (ceil mode, so odd sizes work): one conv block of ``2 width`` channels; quarter
    resolution, after another: one conv block per entry of ``dilations``. A 4x4 stride-4
    transposed conv brings it back (cropped to ``H, W``) and a ``kernel`` conv of the
    full-resolution features is added."""

    def __init__(self, in_channels, width, hidden, kernel, dilations=(1, 2)):
        super().__init__()
        self.full = nn.Sequential(*_block(in_channels, width, kernel))
        layers = [nn.MaxPool2d(2, ceil_mode=True), *_block(width, 2 * width, kernel), nn.MaxPool2d(2, ceil_mode=True)]
        for d in dilations:
            layers += _block(2 * width, 2 * width, kernel, dilation=d)
        self.coarse = nn.Sequential(*layers)
        self.up = nn.ConvTranspose2d(2 * width, hidden, 4, stride=4)
        self.skip = nn.Conv2d(width, hidden, kernel, padding=kernel // 2)

    def forward(self, x):
        f = self.full(x)
        height, width = x.shape[2:]
        return self.up(self.coarse(f))[:, :, :height, :width] + self.skip(f)


class RecurrentLabeller(nn.Module):
    """Input ``(N, in_channels, H, W)`` -> a list of ``steps`` score planes ``(N, classes, H, W)``
    (``Y(t)`` before the softmax), for any ``H, W``."""

    def __init__(self, in_channels=1, classes=CLASSES, width=24, hidden=24, kernel=3, dilations=(1, 2),
                 feedback_kernel=5, feedback_dilation=4, steps=3):
        super().__init__()
        for name, value in dict(kernel=kernel, feedback_kernel=feedback_kernel).items():
            if value % 2 != 1:
                raise ValueError(f"{name} must be odd so that the output plane equals the input plane, got {value}")
        self.steps = steps
        self.U = Encoder(in_channels, width, hidden, kernel, dilations)
        self.W = nn.Conv2d(classes, hidden, feedback_kernel, padding=feedback_dilation * (feedback_kernel // 2),
                           dilation=feedback_dilation, bias=False)
        self.V = nn.Conv2d(hidden, classes, 1)

    def set_prior(self, frequencies):
        """Start ``c`` at the log class frequencies ``(classes,)``, so that training begins from
        the background-majority guess instead of spending its first hundreds of steps on it."""
        self.V.bias.data[...] = np.log(np.maximum(np.asarray(frequencies, dtype=np.float64), 1e-6))

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


def confusion(labels, target, classes):
    """``(classes, classes)`` counts: row the true label, column the predicted one, over all
    pixels of ``labels`` and ``target`` (integer arrays of one shape)."""
    labels, target = np.asarray(labels), np.asarray(target)
    if labels.shape != target.shape:
        raise ValueError(f"labels and target must have one shape, got {labels.shape} and {target.shape}")
    return np.bincount(target.ravel() * classes + labels.ravel(), minlength=classes * classes).reshape(classes, classes)


def scores(counts):
    """What a confusion matrix ``counts`` (label 0 the background) says:

    - ``pixel_accuracy``: trace / total (the background-majority guess already scores the
      background fraction);
    - ``item_pixel_accuracy``: the same over pixels whose true label is not 0;
    - ``class_accuracy``: each label's recall, and ``mean_class_accuracy`` their mean;
    - ``iou``: each label's TP / (TP + FP + FN), and ``mean_iou`` their mean,
      over the labels that occur in the truth or the prediction."""
    counts = np.asarray(counts, dtype=np.float64)
    tp, truth, predicted = np.diag(counts), counts.sum(axis=1), counts.sum(axis=0)
    present = truth > 0
    union = truth + predicted - tp
    recall = np.divide(tp, truth, out=np.zeros_like(tp), where=present)
    iou = np.divide(tp, union, out=np.zeros_like(tp), where=union > 0)
    return {"pixel_accuracy": float(tp.sum() / counts.sum()),
            "item_pixel_accuracy": float(tp[1:].sum() / max(truth[1:].sum(), 1)),
            "class_accuracy": recall.tolist(), "mean_class_accuracy": float(recall[present].mean()),
            "iou": iou.tolist(), "mean_iou": float(iou[union > 0].mean())}
