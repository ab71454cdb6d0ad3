"""Registered hooks and the log processor. They may run the model (and so use relevance/)."""
from .checkpoint_guard_hook import CheckpointGuardHook
from .checkpoint_hook import LatestBestCheckpointHook
from .class_split_hook import SaveClassSplitHook
from .label_check_hook import LabelRangeHook
from .log_processor import ExactEvalLogProcessor
from .nonfinite_hook import NonFiniteLossHook
from .relevance_hook import PredictedRelevanceHook
from .visualization_hook import GAERelevanceHook

__all__ = [
    'CheckpointGuardHook', 'LatestBestCheckpointHook', 'SaveClassSplitHook', 'NonFiniteLossHook',
    'PredictedRelevanceHook', 'GAERelevanceHook', 'LabelRangeHook', 'ExactEvalLogProcessor',
]
