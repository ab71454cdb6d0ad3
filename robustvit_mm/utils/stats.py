"""Mean and spread of repeated measurements (seeds, sweep points)."""
import numbers

import numpy as np


def mean_std(values):
    """``(mean, sample standard deviation)`` of ``values`` as floats; the deviation is None for a
    single value (one run has no spread to report, which is not a spread of 0). ValueError when
    ``values`` is empty or holds something that is not a finite number."""
    values = list(values)
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, numbers.Real)
           or not np.isfinite(v)]
    if not values or bad:
        raise ValueError(f'mean_std: needs finite numbers, got {values!r}')
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), (float(array.std(ddof=1)) if len(array) > 1 else None)
