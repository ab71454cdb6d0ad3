"""GAERelevanceHook: relevance pictures of fixed samples through the runner's visualizer.

Each row is image | image * mask | relevance of the original model | relevance now, so the
visualizer's backends (LocalVisBackend, TensorBoard, WandB) show how fine-tuning moves the
relevance onto the object. The original model's maps are computed once, before the first step.
"""
import torch
from mmengine.dataset import pseudo_collate
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS

from ..relevance import gae_relevance
from ..relevance.capture import find_vit, unwrap_model
from ..visualization.overlay import hstack_panels, inputs_to_rgb, masked, overlay, vstack_rows


@HOOKS.register_module()
class GAERelevanceHook(Hook):
    """Draw GAE relevance of the first ``num_samples`` samples of each split.

    Args:
        interval: draw the training samples every ``interval`` iterations (0: never).
        num_samples: how many samples of each split (the first ones; train samples pass the train
            pipeline once and are then kept fixed).
        splits: which of 'train', 'val', 'test' to draw (val after each validation, test once).
        target: explain the ground-truth class ('gt') or the prediction ('pred').
        alpha: heat-map opacity in the overlays.
    """
    priority = 'LOW'

    def __init__(self, interval=100, num_samples=4, splits=('train', 'val', 'test'), target='gt',
                 alpha=0.5):
        unknown = set(splits) - {'train', 'val', 'test'}
        if unknown:
            raise ValueError(f'GAERelevanceHook: unknown splits {sorted(unknown)}')
        if target not in ('gt', 'pred'):
            raise ValueError(f"GAERelevanceHook: target={target!r}; use 'gt' or 'pred'")
        self.interval = interval
        self.num_samples = num_samples
        self.splits = tuple(splits)
        self.target = target
        self.alpha = alpha
        self._batches = {}   # split -> preprocessed fixed batch
        self._original = {}  # split -> relevance of the model before fine-tuning

    def before_run(self, runner):
        find_vit(runner.model)  # a non-ViT model fails here with a clear TypeError

    def _batch(self, runner, split):
        if split not in self._batches:
            loader = getattr(runner, f'{split}_dataloader')
            dataset = loader.dataset
            count = min(self.num_samples, len(dataset))
            data = pseudo_collate([dataset[i] for i in range(count)])
            model = unwrap_model(runner.model)
            self._batches[split] = model.data_preprocessor(data, False)
        return self._batches[split]

    def _relevance(self, runner, split):
        batch = self._batch(runner, split)
        samples = batch['data_samples']
        targets = None
        if self.target == 'gt' and samples and 'gt_label' in samples[0]:
            targets = torch.cat([s.gt_label for s in samples])
        model = unwrap_model(runner.model)
        with torch.no_grad():
            relevance, _ = gae_relevance(model, batch['inputs'], targets)
        return relevance.cpu()

    def _draw(self, runner, split, step):
        batch = self._batch(runner, split)
        now = self._relevance(runner, split)
        preprocessor = unwrap_model(runner.model).data_preprocessor
        rows = []
        for i, sample in enumerate(batch['data_samples']):
            image = inputs_to_rgb(batch['inputs'][i], preprocessor)
            panels = [image]
            if 'fg_mask' in sample:
                panels.append(masked(image, sample.fg_mask))
            if split in self._original:
                panels.append(overlay(image, self._original[split][i], self.alpha))
            panels.append(overlay(image, now[i], self.alpha))
            rows.append(hstack_panels(panels))
        runner.visualizer.add_image(f'relevance_{split}', vstack_rows(rows), step=step)

    def before_train(self, runner):
        if not is_main_process():
            return
        for split in ('train', 'val'):
            if split in self.splits and self._has_loader(runner, split):
                self._original[split] = self._relevance(runner, split)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if ('train' in self.splits and self.interval > 0 and is_main_process()
                and self.every_n_train_iters(runner, self.interval)):
            self._draw(runner, 'train', runner.iter + 1)

    def after_val_epoch(self, runner, metrics=None):
        if 'val' in self.splits and is_main_process():
            self._draw(runner, 'val', runner.epoch if runner.train_loop is not None else 0)

    def after_test_epoch(self, runner, metrics=None):
        if 'test' in self.splits and is_main_process():
            self._draw(runner, 'test', 0)

    @staticmethod
    def _has_loader(runner, split):
        try:
            return getattr(runner, f'{split}_dataloader') is not None
        except (RuntimeError, AttributeError):
            return False
