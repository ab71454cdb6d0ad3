"""robustvit_mm.visualization.inputs_to_rgb: the one way back from normalised inputs to an RGB picture."""
import numpy as np
import pytest
import torch
from mmengine.model import ImgDataPreprocessor
from mmpretrain.models import ClsDataPreprocessor

from robustvit_mm.visualization import inputs_to_rgb

# A BGR image as LoadImageFromFile gives it: pure red in RGB is (0, 0, 255) in BGR.
RED_BGR = np.zeros((4, 5, 3), np.uint8)
RED_BGR[..., 2] = 255
RED_BGR[0, 0] = (10, 200, 30)   # one pixel with three different channels


def preprocess(preprocessor):
    data = dict(inputs=[torch.from_numpy(RED_BGR).permute(2, 0, 1).contiguous()])
    return preprocessor(data, False)['inputs']


@pytest.mark.parametrize('preprocessor', [
    ClsDataPreprocessor(mean=[127.5] * 3, std=[127.5] * 3, to_rgb=True),
    ClsDataPreprocessor(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True),
    ClsDataPreprocessor(mean=[103.53, 116.28, 123.675], std=[57.375, 57.12, 58.395], to_rgb=False),
    ClsDataPreprocessor(to_rgb=False),   # no normalisation at all
    ImgDataPreprocessor(mean=[127.5] * 3, std=[127.5] * 3, bgr_to_rgb=True),
    ImgDataPreprocessor(mean=[127.5] * 3, std=[127.5] * 3),
], ids=['cls-paper', 'cls-imagenet', 'cls-bgr', 'cls-raw', 'mmengine-rgb', 'mmengine-bgr'])
def test_red_stays_red_whatever_the_preprocessor(preprocessor):
    inputs = preprocess(preprocessor)
    batch = inputs_to_rgb(inputs, preprocessor)
    single = inputs_to_rgb(inputs[0], preprocessor)
    assert batch.shape == (1, 4, 5, 3) and single.shape == (4, 5, 3) and single.dtype == np.uint8
    np.testing.assert_array_equal(batch[0], single)
    assert tuple(single[1, 1]) == (255, 0, 0)          # red in RGB order
    assert tuple(single[0, 0]) == (30, 200, 10)        # the BGR pixel, flipped exactly


def test_unknown_preprocessor_and_bad_shape_are_refused():
    with pytest.raises(TypeError, match='to_rgb'):
        inputs_to_rgb(torch.zeros(3, 2, 2), torch.nn.Identity())
    with pytest.raises(ValueError, match=r'\(3, H, W\)'):
        inputs_to_rgb(torch.zeros(1, 2, 2), ClsDataPreprocessor(to_rgb=True))
