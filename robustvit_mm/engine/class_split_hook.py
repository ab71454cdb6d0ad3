"""Publish the ImageNet-S class split of a run (docs/faithfulness.md#class-split: the list is saved)."""
import json
import os.path as osp
from typing import Dict, List, Tuple

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.runner import BaseLoop
from mmpretrain.registry import HOOKS

from ..datasets.imagenet_s import ImageNetSMaskDataset

SPLIT_FILE = 'imagenet_s_split.json'


def find_imagenet_s_datasets(dataset) -> List[ImageNetSMaskDataset]:
    """The ``ImageNetSMaskDataset`` instances in ``dataset``, looking through dataset wrappers
    (``ConcatDataset.datasets``, ``RepeatDataset``/``ClassBalancedDataset``.dataset, ...)."""
    found, stack, seen = [], [dataset], set()
    while stack:
        ds = stack.pop(0)
        if ds is None or id(ds) in seen:
            continue
        seen.add(id(ds))
        if isinstance(ds, ImageNetSMaskDataset):
            found.append(ds)
            continue
        inner = getattr(ds, 'datasets', None)
        if isinstance(inner, (list, tuple)):
            stack.extend(inner)
        inner = getattr(ds, 'dataset', None)
        if inner is not None:
            stack.append(inner)
    return found


def _describe(ds: ImageNetSMaskDataset) -> Dict:
    return dict(
        split=ds.split, mask_root=ds.mask_root, img_root=ds.img_root, labels=ds.labels,
        num_classes=ds.num_classes, num_samples=ds.num_samples, split_seed=ds.split_seed,
        num_images=len(ds))


def class_split_record(named_datasets: List[Tuple[str, ImageNetSMaskDataset]]) -> Dict:
    """The JSON record of the class split used by ``named_datasets`` ([(loader name, dataset)]).

    Top level: the split of the first dataset (``train``/``val`` class lists, or ``all``) with
    ``num_<part>_classes`` counts and the settings that define it; ``datasets`` describes every
    dataset found (its own lists are added where its split definition differs from the top level).
    """
    first = named_datasets[0][1]
    split = first.split_wnids
    record = {}
    for part, wnids in split.items():
        record[f'num_{part}_classes'] = len(wnids)
    record.update(
        mask_root=first.mask_root, num_classes=first.num_classes, num_samples=first.num_samples,
        split_seed=first.split_seed)
    record.update(split)
    datasets = {}
    for name, ds in named_datasets:
        info = _describe(ds)
        own = ds.split_wnids
        if own != split:
            info['split_wnids'] = own
        datasets[name] = info
    record['datasets'] = datasets
    return record


@HOOKS.register_module()
class SaveClassSplitHook(Hook):
    """Write ``<work_dir>/imagenet_s_split.json`` with the ImageNet-S train/val class lists.

    Runs ``before_train``; in a run without training, ``before_val`` / ``before_test``. It looks only
    at loops that are already built (it never builds a dataloader), finds ``ImageNetSMaskDataset``
    instances (through dataset wrappers) and does nothing when there are none. The file is written
    once per run by the main process.

    Args:
        filename (str): File name inside ``work_dir``.
    """

    priority = 'NORMAL'

    def __init__(self, filename: str = SPLIT_FILE):
        self.filename = filename
        self._written = False

    def _write(self, runner) -> None:
        if self._written:
            return
        named = []
        for name in ('train', 'val', 'test'):
            loop = getattr(runner, f'_{name}_loop', None)
            if not isinstance(loop, BaseLoop):
                continue
            dataloader = getattr(loop, 'dataloader', None)
            for ds in find_imagenet_s_datasets(getattr(dataloader, 'dataset', None)):
                named.append((f'{name}_dataloader', ds))
        if not named:
            return
        self._written = True
        if not is_main_process():
            return
        record = class_split_record(named)
        path = osp.join(runner.work_dir, self.filename)
        with open(path, 'w') as f:
            json.dump(record, f, indent=1)
        runner.logger.info(
            f'SaveClassSplitHook: ImageNet-S class split written to {path} ('
            + ', '.join(f'{part}: {len(record[part])} classes' for part in ('train', 'val', 'all')
                        if part in record) + ')')

    def before_train(self, runner) -> None:
        self._write(runner)

    def before_val(self, runner) -> None:
        self._write(runner)

    def before_test(self, runner) -> None:
        self._write(runner)
