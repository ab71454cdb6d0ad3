"""Attach the relevance map of the predicted class to every test/val data sample.

Metrics cannot see the model, so this hook runs the explainer before each test (or val) iteration:
it preprocesses the batch with the model's own ``data_preprocessor``, computes the relevance of
each image's top-1 class (``gae_relevance`` with ``targets=None``, as the authors' segmentation
test, docs/faithfulness.md#segmentation-test) and stores it as ``data_sample.relevance``
((1, H, W) float32 CPU tensor in [0, 1]).

mmpretrain's ``ClsDataPreprocessor`` hands the SAME ``DataSample`` objects to ``predict``, which
fills in ``pred_label``/``pred_score`` on them; the evaluator then turns them into the dicts the
metric reads, so ``relevance`` arrives next to the prediction of the same forward function.
"""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS

from ..relevance import get_explainer


@HOOKS.register_module()
class PredictedRelevanceHook(Hook):
    """Put ``relevance`` ((1, H, W), predicted class, [0, 1]) into each test/val data sample.

    Args:
        method (str): ``'gae'`` (RobustViT's relevance, default), ``'attention_rollout'`` or
            ``'raw_attention'`` (last block's CLS attention), for comparison
            (``robustvit_mm.relevance.get_explainer``).
        on_val (bool): also run before validation iterations (default True).
    """

    priority = 'NORMAL'

    def __init__(self, method='gae', on_val=True):
        try:
            self.explain = get_explainer(method)
        except ValueError as error:
            raise ValueError(f'PredictedRelevanceHook: {error}') from None
        self.method = method
        self.on_val = on_val

    def _attach(self, runner, data_batch):
        if not data_batch or not data_batch.get('data_samples'):
            return
        model = runner.model
        core = model.module if is_model_wrapper(model) else model
        data = core.data_preprocessor(data_batch, False)
        relevance, _ = self.explain(model, data['inputs'])  # handles no_grad callers
        relevance = relevance.detach().float().cpu()
        for sample, rel in zip(data_batch['data_samples'], relevance):
            sample.set_field(rel, 'relevance')

    def before_test_iter(self, runner, batch_idx, data_batch=None):
        self._attach(runner, data_batch)

    def before_val_iter(self, runner, batch_idx, data_batch=None):
        if self.on_val:
            self._attach(runner, data_batch)
