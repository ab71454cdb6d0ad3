"""The public inference API, in mmpretrain's shape: relevance maps of a trained model from Python.

The experiment runners the tools call (demo, report, sweep, benchmark) are in
:mod:`robustvit_mm.experiments`.
"""
from ..engine.checkpoint_check import init_checked_model, load_checked_checkpoint
from .inferencer import RelevanceInferencer

__all__ = ['RelevanceInferencer', 'init_checked_model', 'load_checked_checkpoint']
