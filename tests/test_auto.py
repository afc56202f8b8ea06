"""algorithm="auto" and choose_algorithm: never fails for valid arguments, never leaves an
algorithm's precision guard, uses what it measured, and its cost model is complete."""
import numpy as np
import pytest
from oracles import CONV, args_of, conv_problems, naive_all
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convlab
from convlab import _cost, _cost_constants
from convlab import conv as conv_module


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_problems(), st.sampled_from([np.float32, np.float64]), st.booleans(), st.integers(0, 2 ** 16))
def test_auto_never_fails_and_matches_the_oracle(problem, dtype, separable, seed):
    nd, x_shape, w_shape, params = problem
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape)
    if separable:  # a rank-1 kernel, so that "separable" is a candidate too
        w = np.ones_like(w) * rng.standard_normal(w.shape[:2] + (1,) * (w.ndim - 2))
    w = w.astype(dtype)
    y = getattr(convlab, CONV[nd])(x, w, algorithm="auto", **params)
    gy = rng.standard_normal(y.shape).astype(dtype)
    gx, gw, _ = getattr(convlab, CONV[nd] + "_backward")(gy, x, w, algorithm="auto", **params)
    ref = naive_all(x, w, gy, params)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    for ours, theirs in zip((y, gx, gw), ref):
        assert ours.dtype == dtype and ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, rtol=tol, atol=tol * max(1.0, np.abs(theirs).max()))
    choice = convlab.choose_algorithm(x.shape, w.shape, dtype=dtype, w=w, **params)
    assert conv_module.ALGORITHMS[choice.algorithm].supports(args_of(x, w, params)) is None
    assert choice.algorithm in _cost.FEATURES and choice.reason.startswith("predicted")


def test_auto_costs_fft_in_float64_when_the_guard_would_promote():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 1, 256, 256)).astype(np.float32)
    w = rng.standard_normal((1, 1, 31, 31)).astype(np.float32)
    args = args_of(x, w, dict(padding="same"))
    plain = conv_module._choose(args, x, w)
    assert plain.algorithm == "fft" and "float64" not in plain.reason
    x[..., :128] *= 1e5  # two regions five orders apart: float32 transforms cannot serve
    guarded = conv_module._choose(args, x, w)
    assert "fft in float64" in guarded.reason
    f64 = _cost.predict("fft", args, np.float64)
    assert f"fft {f64 * 1e3:.3g} ms" in guarded.reason


def test_auto_skips_fft_for_nonfinite_input():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 1, 128, 128))
    w = rng.standard_normal((1, 1, 25, 25))
    x[0, 0, 3, 3] = np.nan
    choice = conv_module._choose(args_of(x, w, {}), x, w)
    assert choice.algorithm != "fft" and "fft hands non-finite operands to direct" in choice.reason
    assert "fft " not in choice.reason.split("(")[0]  # not ranked: it would not run
    y = convlab.conv2d(x, w, algorithm="auto")
    assert np.isnan(y[0, 0, :4, :4]).all() and np.isfinite(y[0, 0, 4:, 4:]).all()


def test_auto_uses_separable_only_for_separable_kernels():
    rng = np.random.default_rng(2)
    shape = (1, 1, 512, 512)
    w = np.outer(rng.standard_normal(15), rng.standard_normal(15))[None, None]
    sep = convlab.choose_algorithm(shape, w.shape, padding="same", w=w)
    assert sep.algorithm == "separable"
    w[0, 0, 0, 0] += 1.0
    assert convlab.choose_algorithm(shape, w.shape, padding="same", w=w).algorithm != "separable"
    assert convlab.choose_algorithm(shape, w.shape, padding="same").algorithm != "separable"


def test_winograd_is_chosen_only_where_it_serves():
    for w_shape, stride in [((64, 64, 5, 5), 1), ((64, 64, 3, 3), 2)]:
        choice = convlab.choose_algorithm((8, 64, 28, 28), w_shape, stride=stride, padding=1)
        assert choice.algorithm != "winograd" and "winograd" not in choice.reason


def test_measured_choice_is_cached_and_used_by_auto(monkeypatch):
    monkeypatch.setattr(conv_module, "_measured", {})
    x_shape, w_shape = (2, 3, 10, 10), (4, 3, 3, 3)
    choice = convlab.choose_algorithm(x_shape, w_shape, padding=1, dtype="float64", measure=True)
    assert choice.reason.startswith("measured")
    for name in ("direct", "im2col", "fft", "winograd"):
        assert name in choice.reason
    assert convlab.choose_algorithm(x_shape, w_shape, padding=1, dtype="float64", measure=True) is choice
    x, w = np.zeros(x_shape), np.zeros(w_shape)
    auto = conv_module._choose(args_of(x, w, dict(padding=1)), x, w)
    assert auto == choice and auto.prepared.name == choice.algorithm
    # float32 is a different entry.
    x, w = x.astype(np.float32), w.astype(np.float32)
    assert conv_module._choose(args_of(x, w, dict(padding=1)), x, w).reason.startswith("predicted")


def test_choose_algorithm_checks_its_arguments():
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        convlab.choose_algorithm((1, 1, 8, 8), (1, 1, 3, 3), dtype="int32")
    with pytest.raises(ValueError, match=r"w must have shape \(1, 1, 3, 3\)"):
        convlab.choose_algorithm((1, 1, 8, 8), (1, 1, 3, 3), w=np.zeros((1, 1, 3, 2)))


def test_cost_model_constants_cover_every_candidate():
    for dtype in ("float32", "float64"):
        for name, feats in _cost.FEATURES.items():
            theta = _cost_constants.CONSTANTS[dtype][name]
            assert len(theta) == len(feats) and all(t >= 0 for t in theta), (dtype, name)
    x, w = np.zeros((2, 3, 9, 9)), np.zeros((4, 3, 3, 3))
    args = args_of(x, w, dict(padding=1))
    assert all(_cost.predict(name, args, np.float32) > 0 for name in _cost.FEATURES)


def test_auto_scans_the_fft_signal_once(monkeypatch):
    from convlab.reference import fft
    calls = []
    real = fft.work_dtype
    monkeypatch.setattr(fft, "work_dtype", lambda *a: calls.append(1) or real(*a))
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 1, 200, 200)).astype(np.float32)
    w = rng.standard_normal((1, 1, 25, 25)).astype(np.float32)
    assert convlab.choose_algorithm(x.shape, w.shape, w=w, padding="same").algorithm == "fft"
    calls.clear()
    y = convlab.conv2d(x, w, padding="same")
    assert len(calls) == 1
    np.testing.assert_allclose(y, convlab.conv2d(x, w, padding="same", algorithm="direct"), rtol=1e-4, atol=1e-4)


def test_auto_factors_a_separable_kernel_once(monkeypatch):
    from convlab.reference import separable
    calls = []
    real = separable.factor
    monkeypatch.setattr(separable, "factor", lambda w: calls.append(1) or real(w))
    monkeypatch.setattr(separable, "_factored", {})
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 1, 512, 512))
    w = np.outer(rng.standard_normal(15), rng.standard_normal(15))[None, None]
    y = convlab.conv2d(x, w, padding="same")
    assert len(calls) == 1  # the choice and the run share one factorisation
    assert conv_module._choose(args_of(x, w, dict(padding="same")), x, w).algorithm == "separable"
    assert len(calls) == 1  # small kernels are remembered by content
    np.testing.assert_allclose(y, convlab.conv2d(x, w, padding="same", algorithm="direct"), atol=1e-10)
