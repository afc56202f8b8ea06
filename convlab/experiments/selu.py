"""Self-normalising networks (Klambauer et al. 2017) at small scale: the SELU fixed point,
activation statistics through depth, deep fully connected nets and a CNN on Fashion-MNIST
against ReLU with and without batch norm, and small tabular tasks against an SVM and a
random forest. The models and the analysis are :mod:`convlab.models.selu`."""
from __future__ import annotations

import numpy as np

from .. import data, nn, optim
from ..models import selu as S
from ..nn import functional as F
from ..training import evaluate, progress

SUMMARY = ("self-normalising nets: SELU fixed point, depth statistics, deep FC nets and a CNN on Fashion-MNIST "
           "vs ReLU(+BN), tabular tasks vs SVM/RF")

QUICK = dict(
    theorem1_grid=(3, 2), bounds_grid=2, portrait_grid=9, mc_width=256, mc_samples=1000, mc_steps=8,
    depth_layers=16, depth_width=128, depth_samples=256,
    fc_depths=(8,), fc_lrs=(0.01,), fc_width=64, fc_seeds=1, fc_train=1024, fc_epochs=1, fc_test=1000,
    cnn_seeds=1, cnn_train=256, cnn_epochs=1, cnn_test=256, cnn_width=4,
    tab_datasets=("iris", "wine"), tab_folds=2, tab_depth=2, tab_width=32, tab_epochs=5, rf_trees=20,
    lr=0.01, momentum=0.9, batch_size=64,
)
FULL = dict(
    theorem1_grid=(5, 4), bounds_grid=4, portrait_grid=15, mc_width=512, mc_samples=2000, mc_steps=12,
    depth_layers=64, depth_width=512, depth_samples=1024,
    fc_depths=(8, 16, 32), fc_lrs=(0.01, 0.003), fc_width=128, fc_seeds=3, fc_train=5000, fc_epochs=4, fc_test=5000,
    cnn_seeds=2, cnn_train=3000, cnn_epochs=3, cnn_test=3000, cnn_width=8,
    tab_datasets=("digits", "breast_cancer", "wine", "iris"), tab_folds=5, tab_depth=4, tab_width=64, tab_epochs=20,
    rf_trees=100, lr=0.01, momentum=0.9, batch_size=64,
)
PORTRAIT_STARTS = [(0.6, 2.5), (-0.5, 2.2), (0.5, 0.3), (-0.4, 0.5), (0.0, 2.8), (0.3, 0.15)]


# ----------------------------------------------------------------------------- fixed point

def fixed_point_section(s, out, seed):
    """Theorem 1 at (omega, tau) = (0, 1) and over its domain; Theorems 2 and 3 on grids; the
    phase portrait with Monte-Carlo trajectories."""
    j = S.jacobian(0.0, 1.0)
    alpha, lam = S.derive_constants()
    n_omega, n_tau = s["theorem1_grid"]
    domain = []
    for omega in np.linspace(-0.1, 0.1, n_omega):
        for tau in np.linspace(0.95, 1.1, n_tau):
            p = S.fixed_point(omega, tau)
            domain.append(dict(omega=omega, tau=tau, mu=p[0], nu=p[1],
                               spectral_norm=S.spectral_norm(S.jacobian(*p, omega, tau))))
    k = s["bounds_grid"]
    mus, omegas, taus = np.linspace(-1, 1, k), np.linspace(-0.1, 0.1, k), np.linspace(0.8, 1.25, k)
    shrink = S.variance_change(mus, omegas, np.linspace(3, 16, 2 * k), taus)
    grow = S.variance_change(mus, omegas, np.linspace(0.05, 0.16, 2 * k), taus)
    map_paths, mc_paths = [], []
    for i, (mu, nu) in enumerate(PORTRAIT_STARTS):
        map_paths.append(S.trajectory(mu, nu, s["mc_steps"]))
        mc_paths.append(S.monte_carlo_trajectory(mu, nu, s["mc_steps"], s["mc_width"], s["mc_samples"],
                                                 seed=seed * 100 + i))
    gap = np.abs(np.array(mc_paths) - np.array(map_paths))
    _plot_portrait(out / "selu_phase_portrait.png", s["portrait_grid"], map_paths, mc_paths)
    return {
        "map_at_0_1": S.mean_variance_map(0.0, 1.0), "fixed_point": S.fixed_point(0.0, 1.0, start=(0.3, 1.6)),
        "jacobian": j, "spectral_norm": S.spectral_norm(j),
        "derived_alpha": alpha, "derived_lambda": lam,
        "alpha_error": alpha - S.ALPHA, "lambda_error": lam - S.LAMBDA,
        "theorem1_domain": domain, "theorem1_max_spectral_norm": max(d["spectral_norm"] for d in domain),
        "theorem2_max_variance_change": shrink.max(), "theorem2_points": shrink.size,
        "theorem3_min_variance_change": grow.min(), "theorem3_points": grow.size,
        "monte_carlo": dict(width=s["mc_width"], samples=s["mc_samples"], steps=s["mc_steps"],
                            max_mean_gap=gap[..., 0].max(), max_variance_gap=gap[..., 1].max(),
                            max_relative_variance_gap=(gap[..., 1] / np.array(map_paths)[..., 1]).max(),
                            starts=PORTRAIT_STARTS, map_final=np.array(map_paths)[:, -1],
                            monte_carlo_final=np.array(mc_paths)[:, -1]),
    }


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_portrait(path, n, map_paths, mc_paths):
    plt = _pyplot()
    mus, nus = np.linspace(-0.7, 0.7, n), np.linspace(0.1, 3.0, n)
    du, dv = np.empty((n, n)), np.empty((n, n))
    for a, nu in enumerate(nus):
        for b, mu in enumerate(mus):
            g = S.mean_variance_map(mu, nu)
            du[a, b], dv[a, b] = g[0] - mu, g[1] - nu
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4.2))
    # arrows at half the step g(mu, nu) - (mu, nu), so that neighbours do not overlap
    ax.quiver(*np.meshgrid(mus, nus), du, dv, angles="xy", scale_units="xy", scale=2, width=0.004, color="0.65")
    for i, (m, c) in enumerate(zip(map_paths, mc_paths)):
        ax.plot(m[:, 0], m[:, 1], "-", color=f"C{i}", lw=1.2)
        ax.plot(c[:, 0], c[:, 1], "o", color=f"C{i}", ms=3, mfc="none")
        dist = np.hypot(m[:, 0], m[:, 1] - 1)
        bx.semilogy(np.maximum(dist, 1e-12), "-", color=f"C{i}")
        bx.semilogy(np.hypot(c[:, 0], c[:, 1] - 1), "o", color=f"C{i}", ms=3, mfc="none")
    ax.plot(0, 1, "k*", ms=10)
    ax.set(xlabel="mean mu", ylabel="variance nu", title="g(mu, nu), omega=0, tau=1: map (lines), layers (circles)")
    bx.set(xlabel="layer", ylabel="distance to (0, 1)", title="convergence: map (lines), Monte-Carlo layers (circles)")
    for a in (ax, bx):
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ----------------------------------------------------------------------------- depth statistics

def depth_section(s, out, seed):
    stats = {name: S.depth_statistics(name, s["depth_layers"], s["depth_width"], s["depth_samples"], seed)
             for name in progress(S.CONFIGS, desc="depth statistics")}
    plt = _pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 3.8))
    layers = np.arange(1, s["depth_layers"] + 1)
    for name, st in stats.items():
        ax.plot(layers, st["mean"], label=name)
        bx.semilogy(layers, np.maximum(st["variance"], 1e-30), label=name)
    ax.set(xlabel="layer", ylabel="mean of activations")
    bx.set(xlabel="layer", ylabel="variance of activations")
    bx.legend(fontsize=7)
    for a in (ax, bx):
        a.grid(alpha=0.3)
    fig.suptitle(f"{s['depth_layers']} layers of width {s['depth_width']}, standard normal inputs")
    fig.tight_layout()
    fig.savefig(out / "selu_depth_statistics.png", dpi=90)
    plt.close(fig)
    at = [k for k in (1, 8, 16, 32, 64) if k <= s["depth_layers"]]
    return {"layers": at, "width": s["depth_width"], "samples": s["depth_samples"],
            "table": {name: {"mean": st["mean"][np.array(at) - 1], "variance": st["variance"][np.array(at) - 1]}
                      for name, st in stats.items()}}


# ----------------------------------------------------------------------------- training

def standardise(train, *others, floor=0.05):
    """Per-feature ``(x - mean) / std`` with the training set's statistics (std floored at
    ``floor`` so that near-constant pixels do not blow up)."""
    mean, std = train.mean(axis=0), np.maximum(train.std(axis=0), floor)
    return [((x - mean) / std).astype(np.float32) for x in (train, *others)]


def load_images(n_train, n_test):
    return data.fashion_mnist_or_digits(n_train, n_test)


def fit(model, x, y, s, epochs, seed, points=20, lr=None):
    """SGD with momentum (the same for every net; ``lr`` defaults to the settings') on minibatches;
    returns the training loss averaged over ``points`` equal stretches of the run (the curve) and
    whether it stayed finite."""
    opt = optim.SGD(model.parameters(), lr=s["lr"] if lr is None else lr, momentum=s["momentum"])
    model.train()
    losses = []
    for epoch in range(epochs):
        for xb, yb in data.batches(x, y, batch_size=s["batch_size"], seed=seed * 1000 + epoch):
            loss = F.cross_entropy(model(nn.Tensor(xb)), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.item()))
            if not np.isfinite(losses[-1]):
                return np.full(points, np.nan), False
    return np.array([c.mean() for c in np.array_split(np.array(losses), min(points, len(losses)))]), True


def _accuracy(model, x, y):
    return evaluate(model, x, y)[1]


def _spread(values):
    v = np.asarray(values, dtype=float)
    return {"mean": float(np.nanmean(v)), "std": float(np.nanstd(v)), "values": v}


def fc_section(s, out, seed, images):
    """Every net of :data:`convlab.models.selu.KINDS` at every depth, learning rate and seed; keys
    of the results are ``"depth D lr LR KIND"``."""
    name, x, y, xt, yt = images
    x, xt = standardise(x.reshape(len(x), -1), xt.reshape(len(xt), -1))
    jobs = [(d, lr, k, r) for d in s["fc_depths"] for lr in s["fc_lrs"] for k in S.KINDS for r in range(s["fc_seeds"])]
    curves, accs = {}, {}
    for depth, lr, kind, r in progress(jobs, desc="fully connected nets"):
        nn.manual_seed(seed * 100 + r)
        net = S.mlp(x.shape[1], 10, depth, s["fc_width"], kind)
        curve, finite = fit(net, x, y, s, s["fc_epochs"], seed * 100 + r, lr=lr)
        curves.setdefault((depth, lr, kind), []).append(curve)
        accs.setdefault((depth, lr, kind), []).append(_accuracy(net, xt, yt) if finite else np.nan)
    figures = []
    plt = _pyplot()
    for depth in s["fc_depths"]:
        fig, axes = plt.subplots(1, len(s["fc_lrs"]), figsize=(4.5 * len(s["fc_lrs"]), 3.5), squeeze=False, sharey=True)
        for ax, lr in zip(axes[0], s["fc_lrs"]):
            for i, kind in enumerate(S.KINDS):
                c = np.array(curves[(depth, lr, kind)])
                t = np.linspace(0, s["fc_epochs"], c.shape[1] + 1)[1:]
                ax.plot(t, c.mean(axis=0), color=f"C{i}", label=S.KINDS[kind])
                ax.fill_between(t, c.min(axis=0), c.max(axis=0), color=f"C{i}", alpha=0.25)
            ax.set(xlabel="epoch", yscale="log", title=f"depth {depth}, lr {lr}")
            ax.grid(alpha=0.3)
        axes[0, 0].set_ylabel("training loss (mean, min-max over seeds)")
        axes[0, 0].legend(fontsize=8)
        fig.suptitle(f"width {s['fc_width']}, {name} ({len(y)} train), SGD momentum {s['momentum']}", fontsize=9)
        fig.tight_layout()
        figures.append(f"selu_fc_depth{depth}.png")
        fig.savefig(out / figures[-1], dpi=80)
        plt.close(fig)

    def keyed(f):
        return {f"depth {d} lr {lr} {k}": f(v) for (d, lr, k), v in sorted(curves.items())}

    return {"dataset": name, "train_size": len(y), "test_size": len(yt), "width": s["fc_width"],
            "epochs": s["fc_epochs"], "seeds": s["fc_seeds"], "lrs": s["fc_lrs"], "figures": figures,
            "test_accuracy": {f"depth {d} lr {lr} {k}": _spread(v) for (d, lr, k), v in sorted(accs.items())},
            "final_training_loss": keyed(lambda c: _spread([r[-1] for r in c])),
            "training_loss_curves": keyed(lambda c: np.mean(c, axis=0))}


def cnn_section(s, out, seed, images):
    name, x, y, xt, yt = images
    mean, std = x.mean(), x.std()
    x, xt = (x - mean) / std, (xt - mean) / std
    accs, losses = {}, {}
    jobs = [(k, r) for k in S.KINDS for r in range(s["cnn_seeds"])]
    for kind, r in progress(jobs, desc="CNNs"):
        nn.manual_seed(seed * 100 + r)
        net = S.cnn(kind, channels=x.shape[1], size=x.shape[2], width=s["cnn_width"])
        curve, finite = fit(net, x, y, s, s["cnn_epochs"], seed * 100 + r, points=5)
        accs.setdefault(kind, []).append(_accuracy(net, xt, yt) if finite else np.nan)
        losses.setdefault(kind, []).append(curve[-1])
    return {"dataset": name, "train_size": len(y), "test_size": len(yt), "epochs": s["cnn_epochs"],
            "width": s["cnn_width"], "seeds": s["cnn_seeds"],
            "test_accuracy": {k: _spread(v) for k, v in accs.items()},
            "final_training_loss": {k: _spread(v) for k, v in losses.items()}}


def tabular_section(s, seed):
    import sklearn.datasets as ds
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import StratifiedKFold
    from sklearn.svm import SVC

    loaders = {"digits": ds.load_digits, "breast_cancer": ds.load_breast_cancer, "wine": ds.load_wine,
               "iris": ds.load_iris}
    results = {}
    jobs = [(d, fold) for d in s["tab_datasets"] for fold in range(s["tab_folds"])]
    folds = {d: list(StratifiedKFold(s["tab_folds"], shuffle=True, random_state=seed).split(*loaders[d](return_X_y=True)))
             for d in s["tab_datasets"]}
    for dname, fold in progress(jobs, desc="tabular tasks"):
        x, y = loaders[dname](return_X_y=True)
        train, test = folds[dname][fold]
        xtr, xte = standardise(x[train], x[test], floor=1e-8)
        acc = results.setdefault(dname, {})
        for kind in S.KINDS:
            nn.manual_seed(seed * 100 + fold)
            net = S.mlp(x.shape[1], int(y.max()) + 1, s["tab_depth"], s["tab_width"], kind)
            _, finite = fit(net, xtr, y[train], s, s["tab_epochs"], seed * 100 + fold, points=1)
            acc.setdefault(S.KINDS[kind], []).append(_accuracy(net, xte, y[test]) if finite else np.nan)
        svm = SVC(C=1.0, kernel="rbf").fit(xtr, y[train])
        acc.setdefault("SVM (RBF)", []).append(svm.score(xte, y[test]))
        rf = RandomForestClassifier(s["rf_trees"], random_state=seed).fit(xtr, y[train])
        acc.setdefault("random forest", []).append(rf.score(xte, y[test]))
    return {"folds": s["tab_folds"], "depth": s["tab_depth"], "width": s["tab_width"], "epochs": s["tab_epochs"],
            "rf_trees": s["rf_trees"], "sizes": {d: len(loaders[d](return_X_y=True)[1]) for d in s["tab_datasets"]},
            "accuracy": {d: {m: _spread(v) for m, v in r.items()} for d, r in results.items()}}


def run(quick, out, seed):
    s = QUICK if quick else FULL
    results = {"settings": s, "fixed_point": fixed_point_section(s, out, seed),
               "depth_statistics": depth_section(s, out, seed)}
    fc_images = load_images(s["fc_train"], s["fc_test"])
    results["fully_connected"] = fc_section(s, out, seed, fc_images)
    cnn_images = load_images(s["cnn_train"], s["cnn_test"])
    results["cnn"] = cnn_section(s, out, seed, cnn_images)
    results["tabular"] = tabular_section(s, seed)
    results["figures"] = (["selu_phase_portrait.png", "selu_depth_statistics.png"]
                          + results["fully_connected"]["figures"])
    return results
