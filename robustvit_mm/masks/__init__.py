"""Foreground masks without annotation (TokenCut over DINO features + the fast bilateral solver).

The command-line front end is ``tools/tokencut_masks.py``; the per-image algorithm (DINO features,
normalised cut, refinement) is :mod:`robustvit_mm.masks.tokencut`, the folder job
:mod:`robustvit_mm.masks.tokencut_batch`, the solver :mod:`robustvit_mm.masks.bilateral_solver`.
"""
from .bilateral_solver import bilateral_solve
from .tokencut import TokenCutResult, build_dino_vitb16, ncut, tokencut_mask
from .tokencut_batch import GenerationSummary, generate_tokencut_masks, load_image, write_mask_png

__all__ = [
    'generate_tokencut_masks', 'GenerationSummary', 'tokencut_mask', 'TokenCutResult',
    'build_dino_vitb16', 'load_image', 'write_mask_png', 'ncut', 'bilateral_solve',
]
