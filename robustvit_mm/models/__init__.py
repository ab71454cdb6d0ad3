"""Registered models: the relevance-guided classifiers, the confidence-boosting head, the losses and
the GradMask / RRR baselines; plus the paper's hyper-parameters as data."""
import json
import os.path as osp

from .baselines import (GradMaskLoss, InputGradientGuidedClassifier,
                        InputGradientGuidedTimmClassifier, InputGradientPenalty, RRRLoss)
from .classifier import RelevanceGuidedClassifier, RelevanceGuidedTimmClassifier
from .heads import ConfidenceBoostingHead
from .losses import ConfidenceBoostingLoss, RelevanceFinetuneLoss

PAPER_HPARAMS_FILE = osp.join(osp.dirname(__file__), 'data', 'paper_hparams.json')


def paper_hparams():
    """The paper's hyper-parameters (Table 5; the baselines' Tables 6-7), with their provenance."""
    with open(PAPER_HPARAMS_FILE, encoding='utf-8') as f:
        return json.load(f)


__all__ = [
    'RelevanceGuidedClassifier', 'RelevanceGuidedTimmClassifier', 'ConfidenceBoostingHead',
    'RelevanceFinetuneLoss', 'ConfidenceBoostingLoss', 'InputGradientGuidedClassifier',
    'InputGradientGuidedTimmClassifier', 'InputGradientPenalty', 'GradMaskLoss', 'RRRLoss',
    'paper_hparams', 'PAPER_HPARAMS_FILE',
]
