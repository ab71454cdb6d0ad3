"""The benchmark generated in memory, as a registered dataset (tests and quick runs)."""
import numpy as np
from mmpretrain.datasets import BaseDataset
from mmpretrain.registry import DATASETS

from .render import (DEFAULT_PER_CLASS, _check_image_size, _check_num_classes, _check_p_match,
                     _split_kind, class_names, generate_split)

__all__ = ['SyntheticSpuriousDataset']


@DATASETS.register_module()
class SyntheticSpuriousDataset(BaseDataset):
    """The benchmark generated in memory (no files): same samples as ``write_benchmark`` before JPEG.

    Args:
        num_classes (int): K (2..20). num_per_class (int, optional): defaults to the
            ``write_benchmark`` default of the split (train 500, masked 10, masked_val 5, tests 100).
        p_match (float): P(background == label) in the biased splits.
        split (str): 'train' (= 'pretrain'), 'masked', 'masked_val', 'test_in_dist', 'test_shifted'.
        seed (int), image_size (int): as in :func:`generate_split`.
        with_mask (bool): put ``fg_mask`` / ``ignore_mask`` into each item.
        pipeline: transforms AFTER loading: the item already holds the image and the masks, so do
            NOT put ``LoadImageFromFile`` / ``LoadForegroundMask`` in it; e.g.
            ``[dict(type='PackInputs', algorithm_keys=['fg_mask', 'ignore_mask'])]``.

    Each data item (``get_data_info`` / before the pipeline) has:
        ``img``: uint8 (H, W, 3) in **BGR** order, as ``LoadImageFromFile`` (cv2) would produce from
        the written JPEG, so pipelines and ``ClsDataPreprocessor(to_rgb=True)`` treat both alike;
        ``img_shape`` = ``ori_shape`` = (H, W); ``gt_label`` (int); ``background_label`` (int);
        with ``with_mask``: ``fg_mask`` float32 (H, W) in {0, 1} (the tile) and ``ignore_mask``
        float32 zeros (H, W); plus ``sample_idx`` from mmengine.
    """

    def __init__(self, num_classes=10, num_per_class=None, p_match=0.9, split='train', seed=0,
                 with_mask=True, image_size=32, pipeline=(), test_mode=False, **kwargs):
        kind = _split_kind(split)
        _check_num_classes(num_classes)
        _check_image_size(image_size)
        _check_p_match(p_match)
        self.split = kind
        self.num_classes = int(num_classes)
        self.num_per_class = int(DEFAULT_PER_CLASS[kind] if num_per_class is None else num_per_class)
        self.p_match = float(p_match)
        self.seed = int(seed)
        self.with_mask = bool(with_mask)
        self.image_size = int(image_size)
        metainfo = kwargs.pop('metainfo', None) or dict(classes=class_names(self.num_classes))
        super().__init__(ann_file='', metainfo=metainfo, pipeline=pipeline, test_mode=test_mode,
                         **kwargs)

    def load_data_list(self):
        arrays = generate_split(self.num_per_class, self.p_match, self.seed, self.split,
                                num_classes=self.num_classes, image_size=self.image_size)
        shape = (self.image_size, self.image_size)
        data_list = []
        for i in range(len(arrays['labels'])):
            item = dict(img=np.ascontiguousarray(arrays['images'][i][..., ::-1]),  # RGB -> BGR
                        img_shape=shape, ori_shape=shape, gt_label=int(arrays['labels'][i]),
                        background_label=int(arrays['background_labels'][i]))
            if self.with_mask:
                item['fg_mask'] = arrays['masks'][i]       # uint8 here, float32 in get_data_info
            data_list.append(item)
        return data_list

    def get_data_info(self, idx):
        info = super().get_data_info(idx)
        if self.with_mask:
            info['fg_mask'] = info['fg_mask'].astype(np.float32)
            info['ignore_mask'] = np.zeros_like(info['fg_mask'])
        return info

    def extra_repr(self):
        return [f'split: {self.split}', f'p_match: {self.p_match}', f'seed: {self.seed}',
                f'image size: {self.image_size}', f'with mask: {self.with_mask}']
