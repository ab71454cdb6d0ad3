"""The fine-tuning objective on held-out data: what the released code keeps the best checkpoint by
(docs/faithfulness.md#best-checkpoint)."""
from collections import defaultdict

import numpy as np
from mmengine.evaluator import BaseMetric
from mmpretrain.registry import METRICS


@METRICS.register_module()
class RelevanceFinetuneMetric(BaseMetric):
    """Sample-weighted means of the per-sample loss terms a relevance-guided classifier attaches in
    val/test (``data_sample.relevance_losses``), their total ``loss`` (the released code's
    validation loss) and the relevance-vs-mask ``relevance_iou``. Use with
    ``default_hooks.checkpoint.save_best='relevance/loss'`` and ``rule='less'``.
    """
    default_prefix = 'relevance'

    def process(self, data_batch, data_samples):
        for sample in data_samples:
            terms = sample.get('relevance_losses')
            if terms is None:
                raise KeyError(
                    'RelevanceFinetuneMetric needs a relevance-guided model (RelevanceGuidedClassifier '
                    'with val_loss=True) and samples carrying fg_mask (LoadForegroundMask + '
                    "PackInputs(algorithm_keys=['fg_mask', 'ignore_mask']))")
            self.results.append(dict(terms))

    def compute_metrics(self, results):
        columns = defaultdict(list)
        for terms in results:
            for key, value in terms.items():
                columns[key].append(value)
        metrics = {key: float(np.mean(values)) for key, values in columns.items()}
        metrics['loss'] = sum(v for k, v in metrics.items() if k.startswith('loss_'))
        return metrics
