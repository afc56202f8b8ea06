"""Section 9.10: the Gabor function against a literal transcription of eq. 9.16-9.18, the
cells, reverse correlation recovering known fields, the Gabor fit, and the quick experiment."""
import json
import math

import numpy as np
import pytest

from convlab import experiments
from convlab.models import gabor as G


def literal(x, y, alpha, beta_x, beta_y, f, phi, x0, y0, tau):
    """Eq. 9.16-9.18 written out for one point."""
    xp = (x - x0) * math.cos(tau) + (y - y0) * math.sin(tau)
    yp = -(x - x0) * math.sin(tau) + (y - y0) * math.cos(tau)
    return alpha * math.exp(-beta_x * xp * xp - beta_y * yp * yp) * math.cos(f * xp + phi)


@pytest.mark.parametrize("seed", range(5))
def test_gabor_matches_the_equations(seed):
    rng = np.random.default_rng(seed)
    p = G.Gabor(rng.normal(), rng.uniform(0.01, 0.3), rng.uniform(0.01, 0.3), rng.uniform(0, 2),
                rng.uniform(-4, 4), rng.uniform(-3, 3), rng.uniform(-3, 3), rng.uniform(-4, 4))
    k = p.kernel((7, 9))
    assert k.shape == (7, 9)
    for r in range(7):
        for c in range(9):
            # x is the column, y the row, both from the kernel's centre
            assert k[r, c] == pytest.approx(literal(c - 4, r - 3, p.alpha, p.beta_x, p.beta_y, p.f, p.phi, p.x0,
                                                    p.y0, p.tau), abs=1e-12)
    xs, ys = rng.normal(size=5) * 4, rng.normal(size=5) * 4
    np.testing.assert_allclose(G.gabor(xs, ys, p.alpha, p.beta_x, p.beta_y, p.f, p.phi, p.x0, p.y0, p.tau),
                               [literal(a, b, p.alpha, p.beta_x, p.beta_y, p.f, p.phi, p.x0, p.y0, p.tau)
                                for a, b in zip(xs, ys)], atol=1e-12)


def test_each_parameter_does_what_the_book_says():
    base = G.Gabor(1.0, 0.05, 0.1, 0.9, 0.4, 0.0, 0.0, 0.3)
    # x0, y0 translate the function
    moved = base.replace(x0=2.0, y0=-3.0).kernel(21)
    np.testing.assert_allclose(moved[:-3, 2:], base.kernel(21)[3:, :-2], atol=1e-12)
    # tau + pi reverses x' and y': the same function with phi -> -phi
    np.testing.assert_allclose(base.replace(tau=base.tau + math.pi, phi=-base.phi).kernel(21), base.kernel(21),
                               atol=1e-12)
    # tau = pi/2 swaps the roles of x and y
    np.testing.assert_allclose(base.replace(tau=math.pi / 2).kernel(21),
                               base.replace(tau=0.0).kernel(21).T, atol=1e-12)
    # alpha scales; at the centre the value is alpha * cos(phi)
    assert base.replace(alpha=-2.5).kernel(21)[10, 10] == pytest.approx(-2.5 * math.cos(0.4))


@pytest.mark.parametrize("name", ["beta_x", "beta_y"])
@pytest.mark.parametrize("value", [0.0, -0.1])
def test_non_positive_scales_are_rejected(name, value):
    with pytest.raises(ValueError, match=name):
        G.Gabor(**{name: value})
    with pytest.raises(ValueError, match=name):
        G.gabor(0.0, 0.0, **{name: value})


def test_other_bad_parameters():
    with pytest.raises(ValueError, match="f must be finite"):
        G.Gabor(f=float("nan"))
    with pytest.raises(TypeError, match="alpha"):
        G.Gabor(alpha="1")
    with pytest.raises(ValueError, match="size"):
        G.grid(0)
    with pytest.raises(ValueError, match="orientations"):
        G.bank(9, orientations=0)


def test_bank():
    kernels, params = G.bank(11, orientations=4, frequencies=(0.5, 1.0), phases=(0.0, 1.0, 2.0))
    assert kernels.shape == (24, 1, 11, 11) and len(params) == 24
    np.testing.assert_allclose(np.linalg.norm(kernels.reshape(24, -1), axis=1), 1.0)
    assert sorted({round(p.tau, 6) for p in params}) == pytest.approx([0, math.pi / 4, math.pi / 2, 3 * math.pi / 4])
    np.testing.assert_allclose(kernels[5, 0], params[5].kernel(11))


def test_responses_are_dot_products():
    rng = np.random.default_rng(0)
    images, kernels = rng.normal(size=(5, 8, 6)), rng.normal(size=(3, 8, 6))
    np.testing.assert_allclose(G.responses(images, kernels), np.einsum("nhw,khw->nk", images, kernels), atol=1e-12)
    with pytest.raises(ValueError, match="same size"):
        G.responses(images, kernels[:, :4])


FIELD = G.Gabor(1.0, 0.06, 0.03, 0.9, 0.5, 1.0, -1.0, 0.8)


def test_reverse_correlation_recovers_a_simple_cell():
    cell = G.SimpleCell(FIELD, 12, noise=0.5)
    probes = G.white_noise(20000, 12, rng=1)
    rates = cell(probes, rng=2)
    assert (rates == 0).any() and (rates > 0).any()  # the rectifier is at work
    assert G.correlation(G.spike_triggered_average(probes, rates), cell.kernel) > 0.95
    assert G.correlation(G.least_squares_field(probes, rates), cell.kernel) > 0.95
    # with few probes the estimate is still noisy: the measure can fail
    few = G.white_noise(100, 12, rng=3)
    assert G.correlation(G.spike_triggered_average(few, cell(few, rng=4)), cell.kernel) < 0.95


def test_complex_cell_average_is_blind_covariance_finds_the_pair_and_shifts_do_not_matter():
    cell = G.ComplexCell(FIELD, 12, noise=0.1)
    probes = G.white_noise(20000, 12, rng=5)
    rates = cell(probes, rng=6)
    assert abs(G.correlation(G.spike_triggered_average(probes, rates), cell.kernels[0])) < 0.3
    stc, values = G.spike_triggered_covariance(probes, rates)
    assert G.subspace_overlap(stc, cell.kernels) > 0.9
    assert G.subspace_overlap(probes[:2], cell.kernels) < 0.2
    # a grating moving under the fields: the quadrature energy hardly changes, the simple cell's does
    x, y = G.grid(12)
    xr = x * math.cos(FIELD.tau) + y * math.sin(FIELD.tau)
    gratings = np.stack([np.cos(FIELD.f * xr - s) for s in np.linspace(0, 2 * math.pi, 16)])
    c = G.ComplexCell(FIELD, 12)(gratings)
    s = G.SimpleCell(FIELD, 12)(gratings)
    assert (c.max() - c.min()) / c.mean() < 0.1
    assert (s.max() - s.min()) / s.mean() > 1.0


def test_fit_recovers_the_parameters():
    fitted, r2 = G.fit(FIELD.kernel(15))
    assert r2 > 0.9999
    np.testing.assert_allclose(fitted.kernel(15), FIELD.kernel(15), atol=1e-5)
    assert fitted.f == pytest.approx(FIELD.f, rel=1e-4)
    assert sorted([fitted.beta_x, fitted.beta_y]) == pytest.approx(sorted([FIELD.beta_x, FIELD.beta_y]), rel=1e-3)
    # white noise is no Gabor function
    _, r2_noise = G.fit(np.random.default_rng(0).normal(size=(15, 15)))
    assert r2_noise < 0.3


def test_quick_experiment(tmp_path):
    record = experiments.run("gabor", quick=True, out=tmp_path, seed=0)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["experiment"] == "gabor" and saved["quick"] is True
    for name in record["figures"]:
        assert (tmp_path / name).stat().st_size > 1000
    assert record["simple_cells"]["least_squares_correlation_mean"] > 0.9
    assert record["complex_cell"]["shift_variation_complex"] < 0.2 < record["complex_cell"]["shift_variation_simple"]
    assert 0 <= record["cnn"]["fit_r2_median"] <= 1
