"""Data samples of the mask-supervised models (RobustViT, GradMask, RRR) at test size."""
import numpy as np
from mmpretrain.structures import DataSample


def masked_samples(batch, size, num_classes):
    """``batch`` DataSamples: a box-shaped object mask shifted per image, with one fractional
    (bilinear-boundary) row of 0.5 above it, an all-zero ignore mask, and label (2 i + 1) mod
    ``num_classes`` (``labels_of`` gives them as a tensor)."""
    out = []
    for i in range(batch):
        mask = np.zeros((size, size), np.float32)
        mask[4 + i:16 + i, 8:20] = 1
        mask[3 + i, 8:20] = 0.5
        sample = DataSample().set_gt_label((2 * i + 1) % num_classes)
        sample.set_field(mask, 'fg_mask')
        sample.set_field(np.zeros_like(mask), 'ignore_mask')
        out.append(sample)
    return out
