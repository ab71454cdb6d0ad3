import math

import numpy as np
import pytest

from robustvit_mm.utils.stats import mean_std


def test_mean_and_sample_std():
    mean, std = mean_std([1.0, 2.0, 4.0])
    assert mean == pytest.approx(7 / 3)
    assert std == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2))
    assert mean_std(np.array([3, 3], dtype=np.float32)) == (3.0, 0.0)


def test_one_value_has_no_spread():
    assert mean_std([5.5]) == (5.5, None)


@pytest.mark.parametrize('values', [[], [1.0, float('nan')], [1.0, 'x'], [True, 1.0]])
def test_refuses_what_is_not_numbers(values):
    with pytest.raises(ValueError, match='mean_std: needs finite numbers'):
        mean_std(values)
