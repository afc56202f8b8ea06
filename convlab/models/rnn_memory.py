"""Memory in recurrent networks (Haviv, Rivkind & Barak 2019, "Understanding and controlling
memory in recurrent neural networks"): a GRU or LSTM net for the delayed-recall task of
:func:`convlab.data.delayed_recall`, its two curricula and the speed regulariser.

    net = RecallRNN(input_size=14 * 14 + 1, hidden_size=64, cell="gru")
    log = train(net, x, y, xv, yv, vocabulary_curriculum(10, t_max=20), steps=2000)

The net reads one frame per step and outputs scores over the classes plus the null class at
every step; the loss is the cross-entropy over all steps, null steps included.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import data, nn, optim
from ..analysis.dynamics import cell_step, find_slow_points, hidden_part, speed, state_size
from ..nn import Tensor, no_grad
from ..nn import functional as F


class RecallRNN(nn.Module):
    """A recurrent cell over the frames and a linear read-out at every step.

    ``input_size``: a frame's length (image plus trigger); ``n_outputs``: classes plus null.
    ``forward(inputs (N, T, input_size))`` -> scores ``(N, T, n_outputs)``; with
    ``return_states`` also the flat states ``(N, T, S)`` (``S = hidden`` for a GRU,
    ``2 * hidden`` for an LSTM, ``[h, c]``) as a list of ``T`` Tensors.
    """

    def __init__(self, input_size, hidden_size=64, n_outputs=11, cell="gru", dtype=None):
        super().__init__()
        cells = {"gru": nn.GRUCell, "lstm": nn.LSTMCell}
        if cell not in cells:
            raise ValueError(f"cell must be 'gru' or 'lstm', got {cell!r}")
        self.kind = cell
        self.cell = cells[cell](input_size, hidden_size, dtype=dtype)
        self.readout = nn.Linear(hidden_size, n_outputs, dtype=dtype)

    def forward(self, inputs, return_states=False):
        x = inputs.data if isinstance(inputs, Tensor) else np.asarray(inputs)
        if x.ndim != 3 or x.shape[2] != self.cell.input_size:
            raise ValueError(f"inputs must be (N, T, {self.cell.input_size}), got {x.shape}")
        x = x.astype(self.cell.weight_hh.data.dtype, copy=False)
        s = Tensor(np.zeros((x.shape[0], state_size(self.cell)), x.dtype))
        states = []
        for t in range(x.shape[1]):
            s = cell_step(self.cell, s, x[:, t])
            states.append(s)
        scores = self.readout(nn.stack([hidden_part(self.cell, s) for s in states], dim=1))
        return (scores, states) if return_states else scores


def recall_loss(scores, targets):
    """Cross-entropy averaged over every step of every sequence (null steps included):
    ``scores (N, T, C)``, ``targets (N, T)``."""
    n, t, c = scores.shape
    return F.cross_entropy(scores.reshape(n * t, c), np.asarray(targets).reshape(n * t))


def speed_penalty(cell, points):
    """Mean speed ``q`` of the cell at the rest input over ``points (K, S)``, held fixed: its
    gradient moves the weights so that those states move slower (the paper's regulariser)."""
    points = np.asarray(points.data if isinstance(points, Tensor) else points)
    return speed(cell, points.astype(cell.weight_hh.data.dtype, copy=False)).mean()


def class_centres(states, batch, n_classes):
    """Each class's centre of mass of the delay states, ``(k, S)`` for the classes present.

    ``states (N, T, S)`` array, ``batch`` a :class:`~convlab.data.DelayedRecall`; a sequence's
    delay states are those at ``t_s <= t < t_a`` (after the stimulus, before the trigger).
    """
    t = np.arange(1, states.shape[1] + 1)
    during = (t[None] >= batch.t_s[:, None]) & (t[None] < batch.t_a[:, None])
    centres = []
    for k in range(n_classes):
        mask = during & (batch.labels == k)[:, None]
        if mask.any():
            centres.append(states[mask].mean(axis=0))
    return np.array(centres)


class Stage(NamedTuple):
    n_classes: int
    t_max: int


def vocabulary_curriculum(n_classes=10, t_max=20, start=2):
    """VoCu: ``start`` classes at the full ``t_max``, one class more per stage up to ``n_classes``."""
    return [Stage(k, t_max) for k in range(start, n_classes + 1)]


def delay_curriculum(n_classes=10, t_max=20, start=6, step=2):
    """DeCu: every class, with ``t_max`` (so the longest delay ``t_max - 1``) growing from
    ``start`` by ``step`` up to ``t_max``."""
    lengths = list(range(start, t_max, step)) + [t_max]
    return [Stage(n_classes, t) for t in lengths]


def direct(n_classes=10, t_max=20):
    """No curriculum: the full task from the first step."""
    return [Stage(n_classes, t_max)]


@no_grad()
def recall_accuracy(model, batch):
    """Fraction of sequences whose output at ``t_a`` is the stimulus's label."""
    scores = model(batch.inputs)
    rows = np.arange(len(batch.labels))
    return float(np.mean(scores.data[rows, batch.t_a - 1].argmax(axis=1) == batch.labels))


def _clip(params, max_norm):
    total = np.sqrt(sum(float((p.grad ** 2).sum()) for p in params if p.grad is not None))
    if total > max_norm:
        for p in params:
            if p.grad is not None:
                p.grad *= max_norm / total
    return total


def train(model, images, labels, val_images, val_labels, stages, steps, batch_size=64, lr=5e-3, advance_at=0.8,
          check_every=50, max_stage_steps=None, noise=0.1, regulariser=None, reg_weight=1.0, refresh=100, seed=0,
          on_check=None, show_progress=True):
    """Train ``model`` on the delayed-recall task for ``steps`` Adam steps under a curriculum.

    ``stages``: a list of :class:`Stage` (``vocabulary_curriculum``, ``delay_curriculum`` or
    ``direct``). Every ``check_every`` steps the recall accuracy at ``t_a`` is measured on a
    fixed validation batch of the current stage (512 sequences from ``val_images``); the
    curriculum advances to the next stage when it is at least ``advance_at``, or when the
    stage has run ``max_stage_steps`` steps (``None``: no limit). The last stage takes the
    remaining steps. A fresh batch of ``batch_size`` sequences is drawn each step.

    ``regulariser``: ``None``; ``"centres"`` adds ``reg_weight * mean q`` at each class's
    centre of mass of the batch's delay states; ``"slow_points"`` adds it at the class slow
    points, found again from the centres every ``refresh`` steps (weights frozen, L-BFGS).

    Returns a list of dicts, one per check: step, stage, n_classes, t_max, loss, val_recall,
    speed (mean ``q`` at the validation batch's class centres), advanced (bool).
    """
    if regulariser not in (None, "centres", "slow_points"):
        raise ValueError(f"regulariser must be None, 'centres' or 'slow_points', got {regulariser!r}")
    if not stages:
        raise ValueError("stages must name at least one stage")
    from ..training import progress

    params = list(model.parameters())
    opt = optim.Adam(params, lr=lr)
    stage, since, log, losses, slow = 0, 0, [], [], None

    def validation(i):
        return data.delayed_recall(val_images, val_labels, stages[i].t_max, stages[i].n_classes, noise=noise,
                                   seed=10_000 + i, n=512)

    val = validation(0)
    for step in progress(range(1, steps + 1), desc=f"{model.kind} train", total=steps, disable=not show_progress):
        st = stages[stage]
        batch = data.delayed_recall(images, labels, st.t_max, st.n_classes, noise=noise,
                                    seed=seed * 1_000_003 + step, n=batch_size)
        scores, states = model(batch.inputs, return_states=True)
        loss = recall_loss(scores, batch.targets)
        if regulariser is not None:
            flat = np.stack([s.data for s in states], axis=1)
            centres = class_centres(flat, batch, st.n_classes)
            if regulariser == "slow_points":
                if slow is None or step % refresh == 0 or len(slow) != len(centres):
                    slow = find_slow_points(model.cell, centres, n_eig=1, max_iter=200).points
                centres = slow
            loss = loss + speed_penalty(model.cell, centres) * reg_weight
        opt.zero_grad()
        loss.backward()
        _clip(params, 5.0)
        opt.step()
        losses.append(float(loss.item()))
        since += 1
        if step % check_every == 0 or step == steps:
            acc = recall_accuracy(model, val)
            with no_grad():
                _, vs = model(val.inputs, return_states=True)
                centres = class_centres(np.stack([s.data for s in vs], axis=1), val, st.n_classes)
                q = float(speed(model.cell, centres).data.mean())
            last = stage == len(stages) - 1
            advance = not last and (acc >= advance_at or (max_stage_steps is not None and since >= max_stage_steps))
            row = dict(step=step, stage=stage, n_classes=st.n_classes, t_max=st.t_max, loss=float(np.mean(losses)),
                       val_recall=acc, speed=q, advanced=bool(advance), by_criterion=bool(advance and acc >= advance_at))
            log.append(row)
            if on_check is not None:
                on_check(row)
            losses = []
            if advance:
                stage, since, slow = stage + 1, 0, None
                val = validation(stage)
    return log
