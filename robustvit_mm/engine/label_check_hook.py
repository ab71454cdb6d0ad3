"""Refuse datasets whose labels do not fit the model's classes, before the first step.

A label >= the model's ``num_classes`` (e.g. ImageNet-1k index 532 with a 500-way head, because the
paper trains on 500 classes) otherwise surfaces deep inside a step as "index 532 is out of bounds"
from a gather in the relevance hook or the loss, with nothing that names the dataset or the option.
"""
from mmengine.hooks import Hook
from mmengine.runner import BaseLoop
from mmpretrain.registry import HOOKS

from ..relevance.capture import unwrap_model


def model_num_classes(model):
    """The number of classes of an mmpretrain classifier (its head) or a ``TimmClassifier``."""
    model = unwrap_model(model)
    for owner in (getattr(model, 'head', None), getattr(model, 'model', None)):
        num = getattr(owner, 'num_classes', None)
        if isinstance(num, int):
            return num
    return None


def labels_out_of_range(dataset, num_classes, limit=3):
    """``(count, examples)``: samples of ``dataset`` whose ``gt_label`` is not in [0, num_classes);
    ``examples`` are up to ``limit`` ``(label, image path)`` pairs."""
    count, examples = 0, []
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        label = info.get('gt_label')
        labels = [label] if isinstance(label, int) else list(label) if label is not None else []
        bad = [int(x) for x in labels if not 0 <= int(x) < num_classes]
        if bad:
            count += 1
            if len(examples) < limit:
                examples.append((bad[0], info.get('img_path', f'sample {i}')))
    return count, examples


@HOOKS.register_module()
class LabelRangeHook(Hook):
    """``ValueError`` naming the dataset, its labels and ``num_classes`` when a built train/val/test
    dataset has a label outside the model's classes (checked once per loop, before it runs).

    Registered in the runtime base's ``default_hooks`` (key ``label_range``); ``enable=False`` turns
    it off.
    """

    priority = 'VERY_HIGH'

    def __init__(self, enable=True):
        self.enable = enable
        self._checked = set()

    def _check(self, runner, name):
        if not self.enable or name in self._checked:
            return
        loop = getattr(runner, f'_{name}_loop', None)
        dataset = getattr(getattr(loop, 'dataloader', None), 'dataset', None)
        if not isinstance(loop, BaseLoop) or dataset is None:
            return
        self._checked.add(name)
        num_classes = model_num_classes(runner.model)
        if num_classes is None:
            return
        count, examples = labels_out_of_range(dataset, num_classes)
        if count:
            shown = ', '.join(f'{label} ({path})' for label, path in examples)
            raise ValueError(
                f'{name}_dataloader: {count} of {len(dataset)} samples of {type(dataset).__name__} '
                f'have labels outside the model\'s num_classes={num_classes} (labels must be < '
                f'{num_classes}), e.g. {shown}. ImageNetSMaskDataset gives ImageNet-1k indices '
                "(labels='imagenet1k'): keep the model's head at num_classes=1000 even when "
                "training on 500 classes. For your own classes, set labels='sorted_folders' in "
                'every loader (train_dataloader.dataset, val_dataloader.dataset and '
                'test_dataloader.dataset) and the number of class folders as model.head.num_classes '
                'and data_preprocessor.num_classes.')

    def before_train(self, runner):
        self._check(runner, 'train')
        self._check(runner, 'val')

    def before_val(self, runner):
        self._check(runner, 'val')

    def before_test(self, runner):
        self._check(runner, 'test')


__all__ = ['LabelRangeHook', 'model_num_classes', 'labels_out_of_range']
