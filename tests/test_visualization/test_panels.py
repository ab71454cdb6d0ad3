"""robustvit_mm.visualization: the colour bar and the figure text."""
import numpy as np
import pytest

from robustvit_mm.visualization import colour_bar, heatmap, put_text


def test_colour_bar_runs_from_one_at_the_top_to_zero_at_the_bottom():
    bar = colour_bar(40, 6)
    assert bar.shape == (40, 6, 3) and bar.dtype == np.uint8
    np.testing.assert_array_equal(bar[0], heatmap(np.ones((1, 6)))[0])     # JET 1: red
    np.testing.assert_array_equal(bar[-1], heatmap(np.zeros((1, 6)))[0])   # JET 0: blue
    assert bar[0, 0, 0] > 100 > bar[0, 0, 2] and bar[-1, 0, 2] > 100 > bar[-1, 0, 0]
    assert (bar == bar[:, :1]).all()   # one colour per row


@pytest.mark.parametrize('align', ['top', 'center', 'bottom'])
def test_put_text_writes_where_asked(align):
    canvas = np.full((60, 80, 3), 255, np.uint8)
    put_text(canvas, 'E1', (5, 30), 10, align)
    rows, cols = np.nonzero((canvas < 128).all(axis=2))
    assert cols.min() >= 5 and cols.max() < 40
    # a 10-px font (capitals ~7 px) whose 10-px line has its top / middle / bottom at row 30
    assert 5 <= rows.max() - rows.min() + 1 <= 10
    if align == 'top':
        assert 29 <= rows.min() and rows.max() <= 41, (rows.min(), rows.max())
    elif align == 'bottom':
        assert 19 <= rows.min() and rows.max() <= 31, (rows.min(), rows.max())
    else:
        assert abs((rows.min() + rows.max()) / 2 - 30) <= 2, (rows.min(), rows.max())
