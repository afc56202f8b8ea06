"""Memory in GRU/LSTM nets on the delayed-recall task (Haviv, Rivkind & Barak 2019):
vocabulary against delay curriculum, recall far beyond the trained delays, class slow
points and their speed, speed over training, and the speed regulariser.

Full run: Fashion-MNIST at 14x14, GRU and LSTM, 3 seeds, curricula VoCu and DeCu (``"direct"``
is a third choice, left out to fit the budget); then each DeCu net is trained further without
the regulariser and with each of its two forms. ``--quick``: digits,
a GRU, one seed, a few hundred steps.
"""
from __future__ import annotations

import os

import numpy as np

from .. import data, nn
from ..analysis import dynamics as dyn
from ..models import rnn_memory as rm
from ..training import parallel_map

SUMMARY = ("delayed recall in GRU/LSTM nets: VoCu vs DeCu, recall to 10x the trained delay, slow-point speed vs "
           "accuracy, speed regulariser")

FULL = dict(dataset="fashion-mnist", cells=("gru", "lstm"), seeds=(0, 1, 2), curricula=("vocu", "decu"), hidden=64,
            t_max=20, steps=1500, batch_size=64, lr=5e-3, advance_at=0.75, check_every=50, max_stage_steps=100,
            noise=0.1, finetune_steps=300, reg_weight=0.1, regularisers=(None, "centres", "slow_points"),
            test_images=500, pca_images=300, long_delay=1000, finder_iter=300, workers=2)
QUICK = dict(dataset="digits", cells=("gru",), seeds=(0,), curricula=("vocu", "decu"), hidden=32, t_max=10,
             steps=300, batch_size=64, lr=5e-3, advance_at=0.75, check_every=25, max_stage_steps=40, noise=0.1,
             finetune_steps=50, reg_weight=0.1, regularisers=(None, "centres", "slow_points"), test_images=300,
             pca_images=100, long_delay=200, finder_iter=300, workers=2)
CURRICULA = {"vocu": rm.vocabulary_curriculum, "decu": rm.delay_curriculum, "direct": rm.direct}


def load(name):
    """(train images, labels, validation images, labels, test images, labels) as flat frames."""
    if name == "fashion-mnist":
        (x, y), (xt, yt) = data.fashion_mnist("train"), data.fashion_mnist("test")
        # 2x2 mean pooling to 14x14: a quarter of the input weights, the classes still apart
        x = x.reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4))
        xt = xt.reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4))
        return x, y, xt[:5000], yt[:5000], xt[5000:], yt[5000:]
    (x, y), (xt, yt) = data.digits("train"), data.digits("test")
    half = len(yt) // 2
    return x, y, xt[:half], yt[:half], xt[half:], yt[half:]


_DATA = {}


def _data(cfg):
    if cfg["dataset"] not in _DATA:
        _DATA[cfg["dataset"]] = load(cfg["dataset"])
    return _DATA[cfg["dataset"]]


def _analyse(net, cfg, seed, with_pca):
    """Accuracy against delay to 10x t_max, class slow points from the long-delay states."""
    x, y, _, _, xt, yt = _data(cfg)
    n = cfg["test_images"]
    t_max = cfg["t_max"]
    delays = sorted({5, 10, 15, t_max - 1, 2 * t_max, 3 * t_max, 5 * t_max, 7 * t_max, 10 * t_max})
    test = dyn.accuracy_against_delay(net, xt[:n], yt[:n], delays, noise=cfg["noise"], seed=seed)
    late = test.states[:, -1]
    starts = np.array([late[test.labels == k].mean(axis=0) for k in range(10)])
    slow = dyn.find_slow_points(net.cell, starts, n_eig=2, max_iter=cfg["finder_iter"])
    out = dict(delays=test.delays, accuracy=test.accuracy, per_class=test.per_class, slow_speeds=slow.speeds,
               slow_eig=np.abs(slow.eigenvalues), start_speeds=dyn.speed(net.cell, starts).data)
    if with_pca:
        m = cfg["pca_images"]
        short = dyn.accuracy_against_delay(net, xt[:m], yt[:m], [cfg["long_delay"]], noise=cfg["noise"], seed=seed)
        out["pca"] = dict(labels=short.labels, short=short.states[:, 20 if t_max >= 20 else t_max],
                          long=short.states[:, -1], slow=slow.points)
    return out


def _base_job(args):
    cfg, cell, curriculum, seed = args
    x, y, xv, yv, _, _ = _data(cfg)
    nn.manual_seed(seed)
    net = rm.RecallRNN(x[0].size + 1, cfg["hidden"], 11, cell)
    log = rm.train(net, x, y, xv, yv, CURRICULA[curriculum](10, cfg["t_max"]), cfg["steps"],
                   batch_size=cfg["batch_size"], lr=cfg["lr"], advance_at=cfg["advance_at"],
                   check_every=cfg["check_every"], max_stage_steps=cfg["max_stage_steps"], noise=cfg["noise"],
                   seed=seed, show_progress=False)
    result = dict(cell=cell, curriculum=curriculum, seed=seed, log=log, final_stage=log[-1]["stage"],
                  final_val_recall=log[-1]["val_recall"], **_analyse(net, cfg, seed, with_pca=seed == 0))
    return result, {k: v.copy() for k, v in net.state_dict().items()}


def _finetune_job(args):
    cfg, cell, seed, state, regulariser = args
    x, y, xv, yv, _, _ = _data(cfg)
    nn.manual_seed(seed)
    net = rm.RecallRNN(x[0].size + 1, cfg["hidden"], 11, cell)
    net.load_state_dict(state)
    log = rm.train(net, x, y, xv, yv, rm.direct(10, cfg["t_max"]), cfg["finetune_steps"],
                   batch_size=cfg["batch_size"], lr=cfg["lr"] / 5, check_every=cfg["check_every"],
                   noise=cfg["noise"], regulariser=regulariser, reg_weight=cfg["reg_weight"], seed=seed + 777,
                   show_progress=False)
    return dict(cell=cell, seed=seed, regulariser=regulariser or "none", final_val_recall=log[-1]["val_recall"],
                **_analyse(net, cfg, seed, with_pca=False))


def run(quick, out, seed):
    cfg = dict(QUICK if quick else FULL)
    cfg["seeds"] = tuple(seed + s for s in cfg["seeds"])
    cfg["workers"] = min(cfg["workers"], os.cpu_count() or 1)
    _data(cfg)  # loaded once, before the workers fork
    jobs = [(cfg, c, cur, s) for c in cfg["cells"] for s in cfg["seeds"] for cur in cfg["curricula"]]
    done = parallel_map(_base_job, jobs, cfg["workers"], "base nets")
    base = [r for r, _ in done]
    states = {(r["cell"], r["seed"]): st for r, st in done if r["curriculum"] == "decu"}
    ft_jobs = [(cfg, c, s, states[(c, s)], reg) for c in cfg["cells"] for s in cfg["seeds"]
               for reg in cfg["regularisers"]]
    finetuned = parallel_map(_finetune_job, ft_jobs, cfg["workers"], "regulariser")
    summary = summarise(cfg, base, finetuned)
    figures = plot(cfg, base, finetuned, summary, out)
    for r in base:
        r.pop("pca", None)  # states for the figure only
    settings = {k: v for k, v in cfg.items()}
    return dict(dataset=cfg["dataset"], settings=settings, summary=summary, runs=base, finetuned=finetuned,
                figures=figures, chance=0.1)


def _stats(values):
    v = np.asarray(values, dtype=float)
    return dict(mean=float(v.mean()), std=float(v.std()), values=v.tolist())


def summarise(cfg, base, finetuned):
    """Per cell and curriculum: accuracy at each delay (mean, std over seeds); the rank
    correlation of class slow-point speed with long-delay accuracy; the regulariser's effect."""
    from scipy.stats import spearmanr

    t_max = cfg["t_max"]
    out = {"trained_delays": [cfg.get("min_gap", 4) + 1, t_max - 1]}
    for cell in cfg["cells"]:
        for cur in cfg["curricula"]:
            runs = [r for r in base if r["cell"] == cell and r["curriculum"] == cur]
            delays = runs[0]["delays"]
            out[f"{cell}/{cur}"] = dict(
                delays=list(map(int, delays)),
                accuracy={int(d): _stats([r["accuracy"][i] for r in runs]) for i, d in enumerate(delays)},
                final_stage=[r["final_stage"] for r in runs],
                stages=len(CURRICULA[cur](10, t_max)))
        speeds, accs = [], []
        for r in (r for r in base if r["cell"] == cell and r["curriculum"] != "direct"):
            ok = ~np.isnan(r["per_class"][-1])
            speeds += list(np.log10(np.maximum(r["slow_speeds"][ok], 1e-20)))
            accs += list(r["per_class"][-1][ok])
        rho, p = spearmanr(speeds, accs)
        out[f"{cell}/speed_vs_accuracy"] = dict(spearman=float(rho), p=float(p), points=len(speeds),
                                                delay=int(10 * t_max))
        for reg in cfg["regularisers"]:
            runs = [r for r in finetuned if r["cell"] == cell and r["regulariser"] == (reg or "none")]
            delays = runs[0]["delays"]
            out[f"{cell}/finetune/{reg or 'none'}"] = dict(
                accuracy={int(d): _stats([r["accuracy"][i] for r in runs]) for i, d in enumerate(delays)},
                slow_speed=_stats([np.median(r["slow_speeds"]) for r in runs]))
    return out


def plot(cfg, base, finetuned, summary, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t_max, cells = cfg["t_max"], cfg["cells"]
    colors = {"vocu": "C0", "decu": "C1", "direct": "C2", "none": "C2", "centres": "C3", "slow_points": "C4"}
    figs = []

    def curves(ax, key_runs, title):
        for name, runs in key_runs:
            d = np.asarray(runs[0]["delays"])
            acc = np.array([r["accuracy"] for r in runs])
            ax.errorbar(d, acc.mean(0), yerr=acc.std(0), marker="o", ms=3, capsize=2, label=name,
                        color=colors.get(name))
        ax.axhline(0.1, color="gray", ls=":", label="chance")
        ax.axvline(t_max - 1, color="k", ls="--", lw=0.8, label="longest trained delay")
        ax.set_xscale("log")
        ax.set_xlabel("delay t_a - t_s")
        ax.set_ylabel("recall accuracy")
        ax.set_ylim(0, 1)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)

    fig, axes = plt.subplots(1, len(cells), figsize=(5 * len(cells), 3.6), squeeze=False)
    for ax, cell in zip(axes[0], cells):
        curves(ax, [(cur, [r for r in base if r["cell"] == cell and r["curriculum"] == cur])
                    for cur in cfg["curricula"]], f"{cell.upper()}: accuracy against delay ({len(cfg['seeds'])} seeds)")
    figs.append(_save(fig, out, "accuracy_vs_delay.png"))

    fig, axes = plt.subplots(1, len(cells), figsize=(5 * len(cells), 3.6), squeeze=False)
    for ax, cell in zip(axes[0], cells):
        curves(ax, [(reg or "none", [r for r in finetuned if r["cell"] == cell and r["regulariser"] == (reg or "none")])
                    for reg in cfg["regularisers"]], f"{cell.upper()}: DeCu nets trained on, with/without speed penalty")
    figs.append(_save(fig, out, "regulariser.png"))

    fig, axes = plt.subplots(1, len(cells), figsize=(5 * len(cells), 3.6), squeeze=False)
    for ax, cell in zip(axes[0], cells):
        for cur in cfg["curricula"]:
            if cur == "direct":
                continue
            rs = [r for r in base if r["cell"] == cell and r["curriculum"] == cur]
            q = np.concatenate([r["slow_speeds"] for r in rs])
            a = np.concatenate([r["per_class"][-1] for r in rs])
            ax.scatter(np.maximum(q, 1e-20), a, s=12, label=cur, color=colors[cur], alpha=0.7)
        s = summary[f"{cell}/speed_vs_accuracy"]
        ax.set_xscale("log")
        ax.set_xlabel("speed q at the class's slow point")
        ax.set_ylabel(f"class accuracy at delay {s['delay']}")
        ax.set_title(f"{cell.upper()}: Spearman rho = {s['spearman']:.2f} (n = {s['points']})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    figs.append(_save(fig, out, "speed_vs_accuracy.png"))

    fig, axes = plt.subplots(1, len(cells), figsize=(5 * len(cells), 3.6), squeeze=False)
    for ax, cell in zip(axes[0], cells):
        for cur in cfg["curricula"]:
            for i, r in enumerate(r for r in base if r["cell"] == cell and r["curriculum"] == cur):
                steps = [row["step"] for row in r["log"]]
                ax.plot(steps, [row["speed"] for row in r["log"]], color=colors[cur], alpha=0.8, lw=1,
                        label=cur if i == 0 else None)
                adv = [row["step"] for row in r["log"] if row["advanced"]]
                ax.plot(adv, [row["speed"] for row in r["log"] if row["advanced"]], "|", color=colors[cur], ms=8)
        ax.set_yscale("log")
        ax.set_xlabel("training step (ticks: curriculum advances)")
        ax.set_ylabel("mean q at class centres")
        ax.set_title(f"{cell.upper()}: speed over training")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    figs.append(_save(fig, out, "speed_over_training.png"))

    for cell in cells:
        rs = [r for r in base if r["cell"] == cell and "pca" in r and r["curriculum"] != "direct"][:2]
        if not rs:
            continue
        fig, axes = plt.subplots(len(rs), 2, figsize=(8, 3.6 * len(rs)), squeeze=False)
        for row, r in zip(axes, rs):
            p = r["pca"]
            # one set of axes per net, from its states at both delays
            fit = np.concatenate([p["short"], p["long"]])
            for ax, key, d in ((row[0], "short", min(20, t_max)), (row[1], "long", cfg["long_delay"])):
                proj = dyn.pca(p[key], 2, fit=fit)[0]
                ax.scatter(proj[:, 0], proj[:, 1], c=p["labels"], cmap="tab10", s=6, vmin=0, vmax=9)
                sp = dyn.pca(p["slow"], 2, fit=fit)[0]
                ax.scatter(sp[:, 0], sp[:, 1], c=np.arange(10), cmap="tab10", marker="x", s=60, vmin=0, vmax=9)
                ax.set_title(f"{cell.upper()} {r['curriculum']}: delay {d} (x: slow points)", fontsize=9)
                ax.set_xlabel("PC 1")
                ax.set_ylabel("PC 2")
        figs.append(_save(fig, out, f"pca_{cell}.png"))
    return figs


def _save(fig, out, name):
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(out / name, dpi=80)
    plt.close(fig)
    return name
