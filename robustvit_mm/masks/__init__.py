"""Foreground masks without annotation (TokenCut over DINO features + the fast bilateral solver).

The command-line front end is ``tools/tokencut_masks.py``.
"""
from .bilateral_solver import BilateralGrid, bilateral_solve, rgb_to_yuv
from .tokencut import (GenerationSummary, NCutResult, TokenCutResult, bipartition_with_seed,
                       build_dino_vitb16, dino_last_keys, encode_imagenet_s_mask,
                       generate_tokencut_masks, list_images, load_dino_state_dict, load_image,
                       make_panel, mask_iou, ncut, ncut_affinity, postprocess_refined,
                       preprocess_image, second_smallest_eigenvector, seed_component,
                       tokencut_mask, upsample_nearest, write_mask_png)

__all__ = [
    'BilateralGrid', 'bilateral_solve', 'rgb_to_yuv', 'GenerationSummary', 'NCutResult',
    'TokenCutResult', 'bipartition_with_seed', 'build_dino_vitb16', 'dino_last_keys',
    'encode_imagenet_s_mask', 'generate_tokencut_masks', 'list_images', 'load_dino_state_dict',
    'load_image', 'make_panel', 'mask_iou', 'ncut', 'ncut_affinity', 'postprocess_refined',
    'preprocess_image', 'second_smallest_eigenvector', 'seed_component', 'tokencut_mask',
    'upsample_nearest', 'write_mask_png',
]
