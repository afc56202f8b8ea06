"""Dynamics of recurrent cells: hidden-state speed, slow points, Jacobians, PCA, recall
against delay (Sussillo & Barak 2013; Haviv, Rivkind & Barak 2019).

A cell with its input held at rest (``x``, zeros by default) is a map ``s' = F(s)`` on its
state: ``h`` for a :class:`~convlab.nn.GRUCell`, ``[h, c]`` (concatenated) for an
:class:`~convlab.nn.LSTMCell`, or any callable on ``(N, S)`` Tensors. Its speed is::

    q(s) = 0.5 * ||F(s) - s||^2

zero at fixed points; slow points are local minima of ``q`` and fixed points are its zeros.
Every gradient comes from the engine's autograd (:mod:`convlab.nn`).
"""
from __future__ import annotations

import copy
from typing import NamedTuple

import numpy as np

from .. import nn
from ..nn import Tensor, no_grad


def state_size(cell):
    """Length ``S`` of the flat state of ``cell`` (``2 * hidden`` for an LSTM)."""
    if isinstance(cell, nn.LSTMCell):
        return 2 * cell.hidden_size
    if isinstance(cell, nn.GRUCell):
        return cell.hidden_size
    raise TypeError(f"state_size: expected a GRUCell or LSTMCell, got {type(cell).__name__}")


def _as_tensor(s, dtype=None):
    if isinstance(s, Tensor):
        return s
    a = np.asarray(s)
    return Tensor(a.astype(dtype) if dtype is not None else a)


def cell_map(cell, x=None):
    """``F``: the cell's update with input ``x`` held fixed, on flat states ``(N, S)`` Tensors.

    ``x`` is ``(input_size,)`` or ``(N, input_size)``; ``None`` is the rest input (zeros).
    A callable that is no cell is returned as it is (it is already a map on states).
    """
    if not isinstance(cell, (nn.GRUCell, nn.LSTMCell)):
        if not callable(cell):
            raise TypeError(f"cell must be a GRUCell, an LSTMCell or a callable, got {type(cell).__name__}")
        return cell
    dtype = cell.weight_hh.data.dtype

    def inputs(n):
        if x is None:
            return np.zeros((n, cell.input_size), dtype)
        a = np.asarray(x.data if isinstance(x, Tensor) else x, dtype)
        return np.broadcast_to(a, (n, cell.input_size)).copy()

    return lambda s: cell_step(cell, s, inputs(s.shape[0]))


def speed(cell, s, x=None):
    """``q(s) = 0.5 * ||F(s) - s||^2`` per state: ``s (N, S)`` -> Tensor ``(N,)``, differentiable
    in ``s`` and in the cell's weights."""
    s = _as_tensor(s)
    d = cell_map(cell, x)(s) - s
    return (d * d).sum(axis=1) * 0.5


def _float64(cell):
    """A float64 copy of a cell (the finder needs gradients far below float32's resolution)."""
    if isinstance(cell, nn.Module):
        return copy.deepcopy(cell).double()
    return cell


def jacobian(cell, s, x=None):
    """``dF/ds`` at one state ``s (S,)``: ``(S, S)``, row ``i`` the gradient of ``F(s)_i``.

    One backward pass: ``S`` copies of ``s`` in a batch, each row's output seeded with one
    unit vector (rows of a batch do not interact).
    """
    s = np.asarray(s.data if isinstance(s, Tensor) else s, dtype=np.float64).ravel()
    n = s.size
    batch = Tensor(np.repeat(s[None], n, axis=0), requires_grad=True)
    cell_map(_float64(cell), x)(batch).backward(np.eye(n))
    return np.array(batch.grad)


def eigenvalues(jac, k=None):
    """Eigenvalues of ``jac`` by decreasing modulus (the first ``k``)."""
    ev = np.linalg.eigvals(jac)
    ev = ev[np.argsort(-np.abs(ev), kind="stable")]
    return ev if k is None else ev[:k]


class SlowPoints(NamedTuple):
    points: np.ndarray       # (K, S) the minima found
    speeds: np.ndarray       # (K,) q at each
    eigenvalues: np.ndarray  # (K, n_eig) leading Jacobian eigenvalues, by modulus
    converged: np.ndarray    # (K,) bool, the optimiser's own verdict


def find_slow_points(cell, starts, x=None, n_eig=3, tol=1e-12, max_iter=2000):
    """Local minima of ``q`` from each start ``(K, S)``, the cell's weights frozen.

    Each start is minimised on its own by L-BFGS (``scipy.optimize.minimize``) in float64 with
    the gradient of ``q`` from autograd; returns a :class:`SlowPoints` with each point's speed
    and the leading eigenvalues of the Jacobian there (modulus near 1: a slow direction).
    """
    from scipy.optimize import minimize

    starts = np.atleast_2d(np.asarray(starts, dtype=np.float64))
    cell64 = _float64(cell)

    def q_and_grad(v):
        s = Tensor(v[None].copy(), requires_grad=True)
        q = speed(cell64, s, x).sum()
        q.backward()
        return float(q.item()), np.array(s.grad[0], dtype=np.float64)

    points, speeds, evs, ok = [], [], [], []
    for start in starts:
        res = minimize(q_and_grad, start, jac=True, method="L-BFGS-B",
                       options=dict(maxiter=max_iter, ftol=tol, gtol=tol * 1e-2, maxcor=30))
        points.append(res.x)
        speeds.append(res.fun)
        ok.append(bool(res.success))
        evs.append(eigenvalues(jacobian(cell64, res.x, x), n_eig))
    return SlowPoints(np.array(points), np.array(speeds), np.array(evs), np.array(ok))


def pca(points, k=2, fit=None):
    """Principal components: ``(projections (N, k), components (k, S), mean (S,), explained (k,))``.

    ``points (..., S)`` are flattened to ``(N, S)``; the axes come from ``fit`` (same layout)
    when given, else from ``points``. ``explained`` is each axis's share of the variance.
    """
    pts = np.asarray(points, dtype=np.float64)
    base = pts if fit is None else np.asarray(fit, dtype=np.float64)
    base = base.reshape(-1, base.shape[-1])
    mean = base.mean(axis=0)
    _, sv, vt = np.linalg.svd(base - mean, full_matrices=False)
    var = sv ** 2
    comps = vt[:k]
    proj = (pts.reshape(-1, pts.shape[-1]) - mean) @ comps.T
    return proj.reshape(pts.shape[:-1] + (k,)), comps, mean, var[:k] / var.sum()


class DelayTest(NamedTuple):
    delays: np.ndarray    # (D,)
    accuracy: np.ndarray  # (D,) recall accuracy at each delay
    per_class: np.ndarray  # (D, n_classes) accuracy of each class
    states: np.ndarray    # (n, max(delays) + 1, S) flat states from the stimulus on
    labels: np.ndarray    # (n,)


@no_grad()
def accuracy_against_delay(model, images, labels, delays, n_classes=None, noise=0.1, seed=0):
    """Recall accuracy at each delay ``t_a - t_s`` in ``delays``, from one trajectory per image.

    ``model`` has ``cell`` and ``readout`` (``convlab.models.rnn_memory.RecallRNN``). Each
    image (``images (n, ...)``, ``labels (n,)``) is shown at ``t_s = 1``, then noise frames
    (standard deviation ``noise``) with the trigger off; at each delay ``d`` the answer the net
    would give if the trigger came at ``t_s + d`` is read from a side step with a triggered
    noise frame, which is the task's sequence with ``t_a = t_s + d``, for every ``d`` in one
    pass. Accuracy counts the label among all outputs (the null class counts as wrong).
    """
    delays = np.asarray(sorted(set(int(d) for d in delays)))
    if len(delays) == 0 or delays[0] < 1:
        raise ValueError(f"delays must be positive ints, got {delays.tolist()}")
    labels = np.asarray(labels)
    n = len(labels)
    n_classes = int(labels.max()) + 1 if n_classes is None else n_classes
    cell = model.cell
    dtype = cell.weight_hh.data.dtype
    d_in = cell.input_size
    rng = np.random.default_rng(seed)
    flat = np.zeros((n, d_in), dtype)
    flat[:, :-1] = np.asarray(images, dtype).reshape(n, d_in - 1)
    size = state_size(cell)
    s = Tensor(np.zeros((n, size), dtype))
    states = np.zeros((n, delays[-1] + 1, size), dtype)
    correct = np.zeros((len(delays), n), bool)

    s = cell_step(cell, s, flat)
    states[:, 0] = s.data
    want = {int(d): i for i, d in enumerate(delays)}
    for t in range(1, delays[-1] + 1):
        frame = (rng.standard_normal((n, d_in)) * noise).astype(dtype)
        if t in want:
            trig = frame.copy()
            trig[:, -1] = 1
            out = model.readout(hidden_part(cell, cell_step(cell, s, trig)))
            correct[want[t]] = out.data.argmax(axis=1) == labels
        frame[:, -1] = 0
        s = cell_step(cell, s, frame)
        states[:, t] = s.data
    per_class = np.stack([[c[labels == k].mean() if np.any(labels == k) else np.nan for k in range(n_classes)]
                          for c in correct])
    return DelayTest(delays, correct.mean(axis=1), per_class, states, labels)


def cell_step(cell, s, frames):
    """One step of the cell on flat states ``s (N, S)`` with input frames ``(N, input_size)``."""
    x = frames if isinstance(frames, Tensor) else Tensor(frames)
    if isinstance(cell, nn.LSTMCell):
        H = cell.hidden_size
        h, c = cell(x, (s[:, :H], s[:, H:]))
        return nn.cat([h, c], dim=1)
    return cell(x, s)


def hidden_part(cell, s):
    """The part of a flat state the read-out sees (``h``)."""
    return s[:, :cell.hidden_size] if isinstance(cell, nn.LSTMCell) else s
