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
        class_order=ds.class_order, split_file=ds.split_file, num_images=len(ds),
        masks_per_class=dict(ds.masks_per_class))


def _settings(ds: ImageNetSMaskDataset) -> str:
    text = (f'num_classes={ds.num_classes}, split_seed={ds.split_seed}, '
            f'class_order={ds.class_order!r}, ')
    if ds.split_file is not None:
        text += f'split_file={ds.split_file!r}, '
    return text + f'mask root {ds.mask_root!r}'


LABEL_MEANING = {'imagenet1k': 'ImageNet-1k indices',
                 'sorted_folders': 'ranks among the sorted class folders'}


def check_one_label_space(named_datasets: List[Tuple[str, ImageNetSMaskDataset]]) -> None:
    """Raise ``ValueError`` when the ImageNet-S datasets of a run number their classes in two ways
    (``labels='sorted_folders'`` on one loader, ``'imagenet1k'`` on another): the same label would
    mean another class in training and in validation."""
    spaces = {}
    for name, ds in named_datasets:
        spaces.setdefault(ds.labels, name)
    if len(spaces) < 2:
        return
    described = '; '.join(f'{name}.dataset has labels={labels!r} ({LABEL_MEANING[labels]})'
                          for labels, name in spaces.items())
    loaders = ', '.join(f'{name}.dataset' for name in dict.fromkeys(n for n, _ in named_datasets))
    raise ValueError(
        f'the ImageNet-S datasets of this run number their classes differently: {described}; the '
        'same label would mean another class in each. Set one labels value in every loader '
        f'({loaders}), and the model\'s num_classes to match (model.head.num_classes and '
        "data_preprocessor.num_classes): 1000 for labels='imagenet1k', the number of class folders "
        "for labels='sorted_folders'.")


def check_one_class_split(named_datasets: List[Tuple[str, ImageNetSMaskDataset]]) -> None:
    """Raise ``ValueError`` when the train/val ImageNet-S datasets of a run split the classes
    differently (e.g. another ``split_seed`` or ``num_classes`` on one side only): validation would
    then run on training classes and pick the best checkpoint on training images."""
    check_one_label_space(named_datasets)
    halves = [(name, ds) for name, ds in named_datasets if ds.split in ('train', 'val')]
    if len(halves) < 2:
        return
    first_name, first = halves[0]
    for name, ds in halves[1:]:
        if ds.split_wnids == first.split_wnids:
            continue
        train = next((d for d in (first, ds) if d.split == 'train'), None)
        val = next((d for d in (first, ds) if d.split == 'val'), None)
        shared = (set(train.split_wnids['train']) & set(val.split_wnids['val'])
                  if train is not None and val is not None else set())
        raise ValueError(
            f'{first_name} and {name} split the ImageNet-S classes differently: {first_name}.dataset '
            f'has {_settings(first)}; {name}.dataset has {_settings(ds)}. '
            + (f'{len(shared)} of the validation classes are training classes (e.g. '
               f'{sorted(shared)[:3]}), so validation and the best checkpoint would use training '
               'images. ' if shared else '')
            + 'Set num_classes, split_seed and class_order (or split_file), and the mask root, '
            'identically in train_dataloader.dataset and val_dataloader.dataset.')


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
        split_seed=first.split_seed, class_order=first.class_order, split_file=first.split_file)
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

    Before that, the train and val datasets must share one class split and one label space
    (``check_one_class_split``): otherwise a ``ValueError`` names both loaders' settings and
    training does not start.

    The runtime base registers it in ``default_hooks`` (key ``class_split``), so a child config's
    own ``custom_hooks`` cannot drop the check.

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
        check_one_class_split(named)
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


__all__ = ['SaveClassSplitHook', 'check_one_class_split', 'check_one_label_space',
           'class_split_record', 'find_imagenet_s_datasets']
