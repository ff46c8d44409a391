"""scripts/null_threshold.py's scoring: answers only above the threshold, the threshold chosen where F1 is best,
and cross-fitting that scores each half with the threshold chosen on the other."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def nt(script):
    return script("null_threshold")


def _rows(seed: int, n: int = 200) -> list[dict]:
    """Right answers scored in (2, 5], wrong ones on unanswerable questions in (0, 2]: the best threshold lies in [0, 2)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        if i % 2:
            rows.append({"gold": [f"answer {i}"], "student": [f"answer {i}", float(rng.uniform(2.01, 5))], "teacher": [f"answer {i}", 3.0]})
        else:
            rows.append({"gold": [], "student": [f"wrong {i}", float(rng.uniform(0.01, 2))], "teacher": ["", -1e9]})
    return rows


def test_answers_only_above_the_threshold(nt):
    rows = _rows(0)
    assert nt.f1_at(rows, "student", 0.0)["f1"] == pytest.approx(50.0)  # every unanswerable question answered wrongly
    assert nt.f1_at(rows, "student", 2.0)["f1"] == pytest.approx(100.0)
    assert nt.f1_at(rows, "student", 5.0)["f1"] == pytest.approx(50.0)  # nothing answered: only the unanswerable right


def test_threshold_and_cross_fitting(nt):
    rows = _rows(1)
    t = nt.best_threshold(rows, "student")
    assert max(r["student"][1] for r in rows if not r["gold"]) <= t < min(r["student"][1] for r in rows if r["gold"])
    result = nt.fit(rows, "student", seed=3)
    assert result["f1_at_0"] == pytest.approx(50.0) and result["f1_oracle"] == pytest.approx(100.0)
    assert [f["questions"] for f in result["folds"]] == [100, 100] and result["f1_cross_fitted"] <= result["f1_oracle"]
    # a threshold chosen on half the questions is scored on the other half: unseen scores may fall on its wrong side
    assert result["f1_cross_fitted"] > 90.0
    assert nt.fit(rows, "teacher")["f1_at_0"] == pytest.approx(100.0)  # the teacher declines where it should
