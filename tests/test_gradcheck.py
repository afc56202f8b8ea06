"""gradcheck must catch wrong backward passes, including ones wrong by 1%."""
import numpy as np
import pytest

from convlab import GradcheckError, conv2d, conv2d_backward, gradcheck


def _inputs():
    rng = np.random.default_rng(0)
    return rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)


@pytest.mark.parametrize("which", [0, 1, 2])
def test_catches_backward_wrong_by_one_percent(which):
    def bad_backward(gy, x, w, b, **kw):
        grads = list(conv2d_backward(gy, x, w, b, **kw))
        grads[which] = grads[which] * 1.01
        return tuple(grads)

    with pytest.raises(GradcheckError, match=f"input {which} at index"):
        gradcheck(conv2d, bad_backward, _inputs(), padding=1)


def test_catches_single_wrong_element():
    def bad_backward(gy, x, w, b, **kw):
        gx, gw, gb = conv2d_backward(gy, x, w, b, **kw)
        gw = gw.copy()
        gw[1, 0, 2, 1] += 1e-3
        return gx, gw, gb

    with pytest.raises(GradcheckError, match=r"index \(1, 0, 2, 1\)"):
        gradcheck(conv2d, bad_backward, _inputs())


def test_report_when_correct_and_float32_inputs_are_promoted():
    x, w, b = (a.astype(np.float32) for a in _inputs())
    report = gradcheck(conv2d, conv2d_backward, (x, w, b), stride=2)
    assert report.passed and report.elements_checked == x.size + w.size + b.size
    assert max(report.max_abs_error) < 1e-7
    assert "passed" in str(report)


def test_none_inputs_are_skipped_and_report_without_raising():
    x, w, _ = _inputs()

    def bad_backward(gy, x, w, b, **kw):
        gx, gw, gb = conv2d_backward(gy, x, w, b, **kw)
        return gx * 0.5, gw, gb

    report = gradcheck(conv2d, bad_backward, (x, w, None), raise_on_failure=False)
    assert not report.passed and report.elements_checked == x.size + w.size
    assert len(report.max_abs_error) == 2


def test_rejects_non_sequence_inputs():
    with pytest.raises(TypeError, match="inputs"):
        gradcheck(conv2d, conv2d_backward, np.zeros((1, 1, 3, 3)))
