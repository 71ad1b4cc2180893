"""engine.metrics: ranks, Spearman, ROC AUC and t-intervals on known cases."""
import math

import numpy as np
import pytest

from engine.errors import InvalidMessage
from engine.metrics import interval, json_ready, ranks, roc_auc, spearman, t_quantile


def test_ranks_share_ties():
    assert ranks([10, 30, 20, 20]).tolist() == [1.0, 4.0, 2.5, 2.5]


def test_spearman_known_cases():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [9, 4, 1, 0]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4], [1, 100, 1000, 5000]) == pytest.approx(1.0)  # ranks only
    # ties take their mean rank; scipy.stats.spearmanr gives 0.9486832980505138
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(0.9486832980505138)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    with pytest.raises(InvalidMessage) as e:
        spearman([1, 2], [1])
    assert e.value.field == "y"


def test_auc_known_cases_and_brute_force():
    assert roc_auc([3, 4, 5], [0, 1, 2]) == 1.0
    assert roc_auc([0, 1], [2, 3, 4]) == 0.0
    assert roc_auc([1, 1, 1], [1, 1]) == 0.5
    assert math.isnan(roc_auc([], [1.0]))
    rng = np.random.default_rng(0)
    for _ in range(20):
        pos = rng.integers(0, 6, size=int(rng.integers(1, 15)))  # small ints: many ties
        neg = rng.integers(0, 6, size=int(rng.integers(1, 15)))
        pairs = [(p > q) + 0.5 * (p == q) for p in pos for q in neg]
        assert roc_auc(pos, neg) == pytest.approx(sum(pairs) / len(pairs), abs=1e-12)


def test_t_interval():
    # Student-t 97.5 % quantiles from the tables
    for df, q in ((1, 12.7062), (2, 4.3027), (4, 2.7764), (10, 2.2281), (60, 2.0003)):
        assert t_quantile(0.975, df) == pytest.approx(q, abs=1e-4)
    iv = interval([1.0, 2.0, 3.0])
    assert iv["mean"] == 2.0 and iv["seeds"] == [1.0, 2.0, 3.0]
    assert iv["hi"] - 2.0 == pytest.approx(4.302653 * 1.0 / math.sqrt(3), rel=1e-5)
    assert iv["lo"] == pytest.approx(4.0 - iv["hi"])
    one = interval([5.0, float("nan")])
    assert one["mean"] == 5.0 and one["lo"] is None and one["seeds"] == [5.0, None]


def test_json_ready_makes_strict_json():
    assert json_ready({"a": np.float32(1.5), 2: [np.int64(3), float("nan"), np.bool_(True)],
                       "b": (float("inf"),)}) == {"a": 1.5, "2": [3, None, True], "b": [None]}
