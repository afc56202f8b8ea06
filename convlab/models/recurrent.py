"""Recurrent residual networks with shared weights and multi-state recurrent nets
(Liao & Poggio 2016, "Bridging the gaps between residual learning, recurrent neural networks
and visual cortex").

A ResNet whose blocks share weights is a recurrent net, ``h(t+1) = h(t) + K(h(t))``. The
multi-state generalisation is a small graph of states (feature maps at decreasing
resolution, like areas of the ventral stream); at every time step every state takes the sum
of the transitions along its incoming edges, plus itself::

    h_j(t+1) = h_j(t) + sum_{i -> j, h_i(t) defined} K_ij^(t)(h_i(t))

Each edge takes one time step. State 0 is defined at ``t = 0`` (the pre-net's output); a
state is undefined (contributes nothing) until input has reached it. The post-net reads the
top (last) state at the read-out time ``T``. A transition ``K_ij`` is BN-ReLU-Conv twice
(``BRCx2``); its first convolution is strided on a bottom-up edge (``i < j``: the size
halves, rounding up) and transposed on a top-down edge (``i > j``). ``shared=True`` uses one
``K_ij`` at every step (gradients of the steps add up in it); ``shared=False`` a separate one
per step, which is a conventional ResNet with a transition that changes over time.
``share_states=True`` also uses one transition for every edge of the same kind and width.
Batch norm is time-specific (``bn="time"``, its own statistics per step) or one set per
transition (``bn="shared"``); the transitions' batch norms have no learned scale and shift,
the post-net's has.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import nn
from ..nn import functional as F


@dataclass(frozen=True)
class Schedule:
    """When each state is first defined, and which edges are active at each step."""

    defined_at: tuple        # first step at which each state holds a value (None: never by T)
    active: tuple            # active[t] = edges (i, j) computed from step t to t + 1
    readout: int             # the step at which the post-net reads the top state; also the unrolled
                             # depth in transitions (each BRCx2), as a self edge gives a path that long


def schedule(n_states, edges, readout):
    """The unrolled schedule of a state graph: state 0 is defined at step 0, and state ``j``
    from step ``t + 1`` once an edge ``i -> j`` has a defined source at step ``t``.

    Raises ``ValueError`` when the top state is unreachable, or not yet defined at ``readout``.
    """
    if isinstance(readout, bool) or not isinstance(readout, int) or readout < 1:
        raise ValueError(f"readout must be a positive int (time steps), got {readout!r}")
    defined = [0] + [None] * (n_states - 1)
    active = []
    for t in range(readout):
        now = [e for e in edges if defined[e[0]] is not None and defined[e[0]] <= t]
        active.append(tuple(now))
        for i, j in now:
            if defined[j] is None:
                defined[j] = t + 1
    top = n_states - 1
    reachable = {0}
    changed = True
    while changed:
        changed = False
        for i, j in edges:
            if i in reachable and j not in reachable:
                reachable.add(j)
                changed = True
    if top not in reachable:
        raise ValueError(f"the top state {top} cannot be reached from the input through edges {list(edges)}")
    if defined[top] is None or defined[top] > readout:
        raise ValueError(f"readout={readout} is before the input reaches the top state {top} "
                         f"(first defined at step {_first_time(n_states, edges)})")
    return Schedule(tuple(defined), tuple(active), readout)


def _first_time(n_states, edges):
    defined, t = {0}, 0
    while n_states - 1 not in defined and t < 4 * n_states:
        defined |= {j for i, j in edges if i in defined}
        t += 1
    return t


def _kind(i, j):
    return "self" if i == j else ("up" if i < j else "down")


class Transition(nn.Module):
    """The two convolutions of ``BRCx2`` for edge ``i -> j`` (the batch norms live apart, so that
    they can be time-specific while the convolutions are shared)."""

    def __init__(self, c_in, c_out, kind):
        super().__init__()
        self.kind = kind
        if kind == "up":
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False)
        elif kind == "down":
            self.conv1 = nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        for conv in (self.conv1, self.conv2):  # He initialisation, as the paper
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")

    def forward(self, h, bn1, bn2, out_size):
        a = F.relu(bn1(h))
        if self.kind == "down":
            n = h.shape[-1]
            extra = out_size - (2 * n - 1)  # output_padding that lands on the state's size
            a = F.conv_transpose2d(a, self.conv1.weight, None, 2, 1, extra)
        else:
            a = self.conv1(a)
        return self.conv2(F.relu(bn2(a)))


class MultiStateRNN(nn.Module):
    """A multi-state recurrent net on ``(N, in_channels, S, S)`` images.

    ``channels[i]`` is state ``i``'s width; its size is ``S`` halved ``i`` times (rounding up).
    ``edges`` are ``(i, j)`` pairs; ``readout`` the step at which the post-net (BN-ReLU-global
    average-linear) reads the top state. Parameters as the module docstring.
    """

    def __init__(self, in_channels, classes, image_size, channels, edges, readout, shared=True,
                 share_states=False, bn="time", prenet_layers=1):
        super().__init__()
        if bn not in ("time", "shared"):
            raise ValueError(f"bn must be 'time' or 'shared', got {bn!r}")
        edges = tuple((int(i), int(j)) for i, j in edges)
        n = len(channels)
        for i, j in edges:
            if not (0 <= i < n and 0 <= j < n) or abs(i - j) > 1:
                raise ValueError(f"edge {(i, j)} must join a state in 0..{n - 1} to itself or a neighbour")
        self.sched = schedule(n, edges, readout)
        self.channels, self.edges, self.readout = tuple(channels), edges, readout
        self.shared, self.share_states, self.bn_mode = shared, share_states, bn
        self.sizes = [image_size]
        for _ in range(n - 1):
            self.sizes.append(-(-self.sizes[-1] // 2))
        pre = [nn.Conv2d(in_channels, channels[0], 3, padding=1, bias=False)]
        for _ in range(prenet_layers - 1):
            pre += [nn.BatchNorm2d(channels[0]), nn.ReLU(), nn.Conv2d(channels[0], channels[0], 3, padding=1,
                                                                      bias=False)]
        self.prenet = nn.Sequential(*pre)
        self.postnet_bn = nn.BatchNorm2d(channels[-1])
        self.fc = nn.Linear(channels[-1], classes)
        # convolutions: one per edge (shared), per edge and step (unshared), per kind and width (share_states)
        self.conv_key = {}
        convs = {}
        for t, active in enumerate(self.sched.active):
            for i, j in active:
                key = self._conv_key(i, j, t)
                self.conv_key[(i, j, t)] = key
                if key not in convs:
                    convs[key] = Transition(channels[i], channels[j], _kind(i, j))
        self.transitions = nn.ModuleList(convs.values())
        self._conv_index = {key: k for k, key in enumerate(convs)}
        norms = {}
        for t, active in enumerate(self.sched.active):
            for i, j in active:
                key = (i, j, t) if bn == "time" else (i, j)
                if key not in norms:
                    # no learned scale and shift: as the paper, only the post-net's BN has them
                    norms[key] = nn.ModuleList([nn.BatchNorm2d(channels[i], affine=False),
                                                nn.BatchNorm2d(channels[j], affine=False)])
        self.norms = nn.ModuleList(norms.values())
        self._norm_index = {key: k for k, key in enumerate(norms)}

    def _transition(self, i, j, step):
        """The convolutions and batch norms of edge ``i -> j`` at ``step``; past the trained steps,
        an edge's latest ones."""
        steps = [t for (a, b, t) in self.conv_key if (a, b) == (i, j) and t <= step]
        if not steps:
            raise ValueError(f"edge {(i, j)} was never active in the {self.readout} trained steps")
        t = max(steps)
        conv = self.transitions[self._conv_index[self.conv_key[(i, j, t)]]]
        norms = self.norms[self._norm_index[(i, j, t) if self.bn_mode == "time" else (i, j)]]
        return conv, norms

    def _conv_key(self, i, j, t):
        if self.share_states:
            key = (_kind(i, j), self.channels[i], self.channels[j])
        else:
            key = (i, j)
        return key if self.shared else key + (t,)

    def forward(self, x, readout=None):
        """Logits ``(N, classes)`` read at step ``readout`` (default: the trained one; a later one
        needs shared weights, as an unshared net has no transitions past its own)."""
        T = self.readout if readout is None else readout
        if T != self.readout:
            schedule(len(self.channels), self.edges, T)  # reachable by then?
            if not self.shared and T > self.readout:
                raise ValueError(f"an unshared net has transitions for {self.readout} steps only, got readout={T}")
        h = [self.prenet(x)] + [None] * (len(self.channels) - 1)
        for t in range(T):
            step = min(t, self.readout - 1)  # time-specific BN past the trained steps reuses the last
            new = list(h)
            for i, j in self.edges:
                if h[i] is None:
                    continue
                conv, (bn1, bn2) = self._transition(i, j, step)
                update = conv(h[i], bn1, bn2, self.sizes[j])
                new[j] = update if new[j] is None else new[j] + update
            h = new
        top = F.relu(self.postnet_bn(h[-1]))
        return self.fc(top.mean(axis=(2, 3)))


def preset(name, in_channels, classes, image_size, width=16, readout=None, **kwargs):
    """The paper's presets: ``"resnet1"`` (one state, self edge: a ResNet of ``readout`` blocks),
    ``"resnet3"`` (three states, bottom-up and self edges), ``"frnn2"`` and ``"frnn3"``
    (fully recurrent: self, bottom-up and top-down)."""
    presets = {
        "resnet1": ((width,), [(0, 0)], 4),
        "resnet3": ((width, 2 * width, 4 * width), [(0, 0), (1, 1), (2, 2), (0, 1), (1, 2)], 6),
        "frnn2": ((width, 2 * width), [(0, 0), (1, 1), (0, 1), (1, 0)], 4),
        "frnn3": ((width, 2 * width, 4 * width), [(0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (1, 0), (2, 1)], 6),
    }
    if name not in presets:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(presets)}")
    channels, edges, default_readout = presets[name]
    return MultiStateRNN(in_channels, classes, image_size, channels, edges, readout or default_readout, **kwargs)
