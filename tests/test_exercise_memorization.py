"""Chapter 10's exercise: the grader's independent LP reference agrees with the package's POT cost."""
import numpy as np
import pytest

from musiclm_mini.evaluation.memorization import histogram_cost
from musiclm_mini.exercises import check_histogram_cost
from musiclm_mini.exercises.memorization import _cases, reference_histogram_cost


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c[0] if isinstance(c, tuple) else "")
def test_the_reference_agrees_with_the_package(case):
    _, a, b, c = case
    assert reference_histogram_cost(a, b, c) == pytest.approx(histogram_cost(a, b, c, "emd"), abs=1e-7)


def test_the_grader_passes_the_package_and_fails_the_usual_mistakes(capsys):
    import ot

    assert check_histogram_cost(lambda a, b, c: histogram_cost(a, b, c, "emd"), verbose=False)
    squared = lambda a, b, c: ot.emd2(a / a.sum(), b / b.sum(), np.linalg.norm(c[:, None] - c[None], axis=-1) ** 2)
    assert not check_histogram_cost(squared)
    assert "not its square" in capsys.readouterr().out
    assert not check_histogram_cost(lambda a, b, c: 0.0, verbose=False)
