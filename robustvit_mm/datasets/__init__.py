"""Registered datasets and transforms, and the shared file formats. Know nothing of models."""
from .formats import (IMAGE_EXTENSIONS, IMAGENET_NORM, PAPER_NORM, decode_imagenet_s_mask,
                      encode_imagenet_s_mask, is_image_file)
from .imagenet_s import ImageNetSMaskDataset
from .shifted import (CropBorder, ImageNetA, ImageNetR, ImageNetSegmentation, ImageNetSketch,
                      ImageNetV2, ObjectNet, SIScore)
from .synthetic import SyntheticSpuriousDataset
from .transforms import LoadCheckedImage, LoadForegroundMask, WithMask

__all__ = [
    # datasets (DATASETS)
    'ImageNetSMaskDataset', 'ImageNetA', 'ImageNetR', 'ImageNetSketch', 'ImageNetV2', 'SIScore',
    'ObjectNet', 'ImageNetSegmentation', 'SyntheticSpuriousDataset',
    # transforms (TRANSFORMS)
    'LoadCheckedImage', 'LoadForegroundMask', 'WithMask', 'CropBorder',
    # shared formats and constants
    'IMAGE_EXTENSIONS', 'is_image_file', 'encode_imagenet_s_mask', 'decode_imagenet_s_mask',
    'PAPER_NORM', 'IMAGENET_NORM',
]
