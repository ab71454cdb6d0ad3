"""Foreground masks without annotation (TokenCut over DINO features + the fast bilateral solver).

The command-line front end is ``tools/tokencut_masks.py``; the steps (normalised cut, solver,
post-processing) are in :mod:`robustvit_mm.masks.tokencut` and :mod:`robustvit_mm.masks.bilateral_solver`.
"""
from .bilateral_solver import bilateral_solve
from .tokencut import (GenerationSummary, TokenCutResult, build_dino_vitb16, generate_tokencut_masks,
                       load_image, ncut, tokencut_mask, write_mask_png)

__all__ = [
    'generate_tokencut_masks', 'GenerationSummary', 'tokencut_mask', 'TokenCutResult',
    'build_dino_vitb16', 'load_image', 'write_mask_png', 'ncut', 'bilateral_solve',
]
