"""ImageNet-S foreground masks paired with ImageNet images (the RobustViT training data).

On disk (ImageNet-S919 ``train-semi-segmentation`` masks pair with ImageNet-1k ``train`` images)::

    <data_root>/<mask_path>/<wnid>/<name>.png      ImageNet-S mask (id = G*256 + R)
    <data_root>/<img_path>/<wnid>/<name>.JPEG      the image (any of IMAGE_EXTENSIONS, any case)

Differences from the authors' ``segmentation_dataset.py`` (docs/faithfulness.md#class-split):

- class folders and mask files are SORTED, never taken in ``os.listdir`` order;
- the class list is then shuffled with ``random.Random(split_seed)``; every seed (0 included) is a
  real seed (the authors' code skipped the shuffle for seed 0 and shuffled an unsorted list), and
  ``split_seed=None`` (system randomness, a different split every run) is refused;
- ``class_order='sorted'`` gives the paper's literal reading instead: the first ``num_classes``
  classes in sorted order, no shuffle; ``split_file`` reuses a split saved by a run;
- stray files at the top level are skipped instead of crashing the listing.

Faithful parts: the 10 wnids that ImageNet-S919 merged are dropped (914 classes remain), train = the
first ``num_classes`` shuffled classes with the first ``num_samples`` masks each, val = the remaining
classes with 1 mask each, and the label is the ImageNet-1k index of the wnid.
"""
import json
import os
import os.path as osp
import random
from typing import Dict, List, Optional, Sequence, Union

import cv2
from mmengine.logging import print_log
from mmpretrain.datasets import BaseDataset
from mmpretrain.registry import DATASETS

from .formats import IMAGE_EXTENSIONS, decode_imagenet_s_mask, is_image_file, object_pixels
from .imagenet_classes import imagenet_index, imagenet_wnids

# The five pairs ImageNet-S919 merged (key merged into value): only the "value" wnids exist as
# ImageNet-S919 folders; the authors' code drops all ten from the class list, and so do we.
MERGED_TAGS = frozenset({
    'n04356056', 'n04355933',  # sunglasses / sunglass
    'n04493381', 'n02808440',  # tub / bathtub
    'n03642806', 'n03832673',  # laptop / notebook
    'n04008634', 'n03773504',  # projectile / missile
    'n03887697', 'n15075141',  # paper towel / toilet tissue
})

MASK_EXTENSION = '.png'
SPLITS = ('train', 'val', 'all')
CLASS_ORDERS = ('shuffled', 'sorted')
LABEL_MODES = ('imagenet1k', 'sorted_folders')
EMPTY_MASK_RULES = ('error', 'skip')


@DATASETS.register_module()
class ImageNetSMaskDataset(BaseDataset):
    """ImageNet-S masks + ImageNet images with a sorted, seeded class split.

    Args:
        data_root (str): Root that ``data_prefix`` paths are relative to.
        data_prefix (dict): ``img_path`` (image class folders) and ``mask_path`` (mask class
            folders), relative to ``data_root`` unless absolute.
        split (str): ``'train'`` (the first ``num_classes`` shuffled classes, ``num_samples`` masks
            each), ``'val'`` (the held-out classes, 1 mask each) or ``'all'`` (every class, every
            mask; ``num_classes``/``num_samples``/``split_seed`` are then unused).
        num_classes (int): Number of training classes. Default 500 (the paper).
        num_samples (int): Masks per training class (the first ones in sorted file order). Default 3.
        split_seed (int): Seed of ``random.Random`` that shuffles the sorted class list. ``None``
            (system randomness) is refused: the split must be reproducible.
        class_order (str): ``'shuffled'`` (default): the sorted class list shuffled with
            ``split_seed``, then the first ``num_classes`` train; ``'sorted'``: the paper's literal
            "first 500 classes", i.e. the first ``num_classes`` in sorted order (``split_seed``
            unused).
        split_file (str, optional): A class split saved by ``SaveClassSplitHook``
            (``imagenet_s_split.json``, or any JSON with ``train`` and ``val`` wnid lists): it
            defines the split instead of ``split_seed``/``class_order``; ``num_classes`` must equal
            its number of training classes.
        labels (str): ``'imagenet1k'``: ``gt_label`` is the ImageNet-1k index of the wnid folder, and
            ``metainfo['classes']`` are the 1000 ImageNet-1k wnids; ``'sorted_folders'``: ``gt_label``
            is the index of the folder among the sorted class folders (merged wnids dropped), and
            ``metainfo['classes']`` are those folder names (for non-ImageNet data). The train and
            val datasets of a run must use the same one.
        empty_masks (str): ``'error'`` (default): a mask without one object pixel is an error
            naming the file when ``LoadForegroundMask`` reads it; ``'skip'``: the masks are read
            here and those without an object are left out (the next masks of the class take their
            place) and counted in the summary line.
        pipeline (Sequence): Transforms.
        **kwargs: Other :class:`mmengine.dataset.BaseDataset` arguments (``lazy_init``,
            ``indices``, ``serialize_data``, ``test_mode``, ``metainfo``, ...).

    Every data item has ``img_path``, ``mask_path`` and ``gt_label`` (int). ``split_wnids`` is
    ``dict(train=[...], val=[...])`` (``dict(all=[...])`` for ``split='all'``), the class folders of
    the split definition, whichever of its halves this dataset serves. The train and val datasets of
    one run must share one split definition; ``SaveClassSplitHook`` (a default hook of the runtime
    base) refuses to train when they do not.

    Class folders are the directories of the mask root (hidden ones, starting with '.', and
    non-directory entries are skipped); masks are the ``*.png`` files in a class folder (other files
    are ignored). An empty class folder, a missing root, a mask without its image, a folder that is
    not an ImageNet-1k wnid (with ``labels='imagenet1k'``) or too few classes raise an error naming
    the path or option.

    Summary: loading logs one line with the number of classes and masks, the masks used per class
    (min / max; fewer than ``num_samples`` where a class holds fewer) and the masks skipped; the same
    numbers are in ``masks_per_class`` (``dict(min=, max=)``) and ``skipped_masks`` (paths).
    """

    def __init__(self,
                 data_root: str = '',
                 data_prefix: Union[str, dict] = dict(
                     img_path='train', mask_path='train-semi-segmentation'),
                 split: str = 'train',
                 num_classes: int = 500,
                 num_samples: int = 3,
                 split_seed: Optional[int] = 0,
                 class_order: str = 'shuffled',
                 split_file: Optional[str] = None,
                 labels: str = 'imagenet1k',
                 empty_masks: str = 'error',
                 pipeline: Sequence = (),
                 ann_file: str = '',
                 metainfo: Optional[dict] = None,
                 lazy_init: bool = False,
                 **kwargs):
        if split not in SPLITS:
            raise ValueError(f'ImageNetSMaskDataset: split={split!r}, expected one of {SPLITS}')
        if labels not in LABEL_MODES:
            raise ValueError(f'ImageNetSMaskDataset: labels={labels!r}, expected one of {LABEL_MODES}')
        if empty_masks not in EMPTY_MASK_RULES:
            raise ValueError(f'ImageNetSMaskDataset: empty_masks={empty_masks!r}, expected one of '
                             f'{EMPTY_MASK_RULES}')
        if isinstance(data_prefix, str):
            raise TypeError('ImageNetSMaskDataset: data_prefix must be a dict with img_path and '
                            f'mask_path, got the string {data_prefix!r}')
        data_prefix = dict(data_prefix)
        missing = {'img_path', 'mask_path'} - set(data_prefix)
        if missing:
            raise ValueError(f'ImageNetSMaskDataset: data_prefix {data_prefix} lacks {sorted(missing)}')
        if class_order not in CLASS_ORDERS:
            raise ValueError(f'ImageNetSMaskDataset: class_order={class_order!r}, expected one of '
                             f'{CLASS_ORDERS}')
        if split != 'all' and split_file is None and class_order == 'shuffled' and (
                not isinstance(split_seed, int) or isinstance(split_seed, bool)):
            raise ValueError(
                f'ImageNetSMaskDataset: split_seed={split_seed!r}; the class split needs an int seed '
                '(None would shuffle with system randomness: another split every run, and train and '
                "val would disagree), or class_order='sorted' for the first num_classes sorted classes")
        if split != 'all':
            if not isinstance(num_classes, int) or num_classes < 1:
                raise ValueError(f'ImageNetSMaskDataset: num_classes={num_classes!r} must be an int >= 1')
            if not isinstance(num_samples, int) or num_samples < 1:
                raise ValueError(f'ImageNetSMaskDataset: num_samples={num_samples!r} must be an int >= 1')
        self.split = split
        self.num_classes = num_classes
        self.num_samples = num_samples
        self.split_seed = split_seed
        self.class_order = class_order
        self.split_file = split_file
        self.labels = labels
        self.empty_masks = empty_masks
        self.masks_per_class = dict(min=0, max=0)
        self.skipped_masks: List[str] = []
        self._scan_cache = None

        super().__init__(
            ann_file=ann_file,
            metainfo=metainfo,
            data_root=data_root,
            data_prefix=data_prefix,
            pipeline=pipeline,
            lazy_init=True,
            **kwargs)

        # metainfo['classes'] indexes gt_label, as in mmpretrain's ImageNet dataset.
        if 'classes' not in self._metainfo:
            if labels == 'imagenet1k':
                self._metainfo['classes'] = tuple(imagenet_wnids())
            else:
                self._metainfo['classes'] = tuple(self._class_folders())
        if not lazy_init:
            self.full_init()

    # ------------------------------------------------------------------ paths
    @property
    def mask_root(self) -> str:
        return self.data_prefix['mask_path']

    @property
    def img_root(self) -> str:
        return self.data_prefix['img_path']

    # --------------------------------------------------------------- scanning
    def _class_folders(self) -> List[str]:
        """Sorted class folder names of the mask root, merged wnids dropped."""
        root = self.mask_root
        if not osp.isdir(root):
            raise FileNotFoundError(
                f'ImageNetSMaskDataset: mask root {root!r} does not exist or is not a directory '
                f'(data_root={self.data_root!r}, data_prefix mask_path)')
        names = sorted(
            e.name for e in os.scandir(root)
            if e.is_dir() and not e.name.startswith('.') and e.name not in MERGED_TAGS)
        if not names:
            raise FileNotFoundError(f'ImageNetSMaskDataset: no class folders in mask root {root!r}')
        return names

    def _scan(self) -> Dict[str, List[str]]:
        """{class folder: sorted mask file names}, for every class folder (cached)."""
        if self._scan_cache is None:
            files = {}
            for name in self._class_folders():
                folder = osp.join(self.mask_root, name)
                masks = sorted(
                    e.name for e in os.scandir(folder)
                    if e.is_file() and not e.name.startswith('.')
                    and osp.splitext(e.name)[1].lower() == MASK_EXTENSION)
                if not masks:
                    raise FileNotFoundError(
                        f'ImageNetSMaskDataset: class folder {folder!r} holds no {MASK_EXTENSION} '
                        'mask (an empty class folder would shift the class split; remove it)')
                files[name] = masks
            self._scan_cache = files
        return self._scan_cache

    def _split_classes(self) -> Dict[str, List[str]]:
        classes = list(self._scan())  # sorted
        if self.split == 'all':
            return dict(all=classes)
        if self.split_file is not None:
            return self._split_from_file(classes)
        if self.num_classes > len(classes) or (self.split == 'val' and self.num_classes == len(classes)):
            raise ValueError(
                f'ImageNetSMaskDataset: num_classes={self.num_classes} training classes requested but '
                f'{self.mask_root!r} has {len(classes)} class folders (after dropping merged wnids)'
                + ('; no class would be left for split="val"' if self.split == 'val' else ''))
        ordered = list(classes)
        if self.class_order == 'shuffled':
            random.Random(self.split_seed).shuffle(ordered)
        return dict(train=ordered[:self.num_classes], val=ordered[self.num_classes:])

    def _split_from_file(self, classes: List[str]) -> Dict[str, List[str]]:
        path = self.split_file
        if not osp.isfile(path):
            raise FileNotFoundError(f'ImageNetSMaskDataset: split_file {path!r} not found')
        try:
            with open(path) as f:
                record = json.load(f)
            train, val = [str(w) for w in record['train']], [str(w) for w in record['val']]
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f'ImageNetSMaskDataset: split_file {path!r} is not a class split with '
                             f'"train" and "val" wnid lists (as SaveClassSplitHook writes): '
                             f'{type(error).__name__}: {error}') from None
        unknown = sorted(set(train + val) - set(classes))
        if unknown:
            raise ValueError(f'ImageNetSMaskDataset: split_file {path!r} names {len(unknown)} '
                             f'class(es) that are not class folders of {self.mask_root!r}: '
                             f'{unknown[:5]}{" ..." if len(unknown) > 5 else ""}')
        both = sorted(set(train) & set(val))
        if both:
            raise ValueError(f'ImageNetSMaskDataset: split_file {path!r} puts {len(both)} class(es) '
                             f'in both train and val: {both[:5]}')
        if self.num_classes != len(train):
            raise ValueError(f'ImageNetSMaskDataset: num_classes={self.num_classes} but split_file '
                             f'{path!r} has {len(train)} training classes; set '
                             f'num_classes={len(train)}')
        return dict(train=train, val=val)

    @property
    def split_wnids(self) -> Dict[str, List[str]]:
        """The class split: ``dict(train=[...], val=[...])`` (``dict(all=[...])`` for split 'all')."""
        return {k: list(v) for k, v in self._split_classes().items()}

    def _find_image(self, wnid: str, mask_file: str, mask_path: str, listings: dict) -> str:
        """The one image of the mask's stem in ``<img_root>/<wnid>`` (``listings`` caches folders)."""
        folder = osp.join(self.img_root, wnid)
        if wnid not in listings:
            by_stem = {}
            if osp.isdir(folder):
                for e in os.scandir(folder):
                    if e.is_file() and is_image_file(e.name):
                        by_stem.setdefault(osp.splitext(e.name)[0], []).append(e.path)
            listings[wnid] = by_stem
        stem = osp.splitext(mask_file)[0]
        found = sorted(listings[wnid].get(stem, ()))
        if not found:
            raise FileNotFoundError(
                f'ImageNetSMaskDataset: mask {mask_path!r} has no image: expected '
                f'{osp.join(folder, stem + ".JPEG")!r} (or another image extension: '
                f'{", ".join(IMAGE_EXTENSIONS)}, any letter case)')
        if len(found) > 1:
            raise ValueError(f'ImageNetSMaskDataset: mask {mask_path!r} matches several images: {found}')
        return found[0]

    # ------------------------------------------------------------------ loading
    def load_data_list(self) -> List[dict]:
        files = self._scan()
        split = self._split_classes()
        classes = split[self.split]
        if self.labels == 'imagenet1k':
            known = set(imagenet_wnids())
            bad = [name for name in files if name not in known]
            if bad:
                raise ValueError(
                    f'ImageNetSMaskDataset: {len(bad)} class folder(s) of {self.mask_root!r} are not '
                    f'ImageNet-1k wnids: {bad[:10]}{" ..." if len(bad) > 10 else ""} '
                    "(labels='imagenet1k'; use labels='sorted_folders' for other data)")
            label_of = {name: imagenet_index(name, source=self.mask_root) for name in files}
        else:
            label_of = {name: i for i, name in enumerate(files)}

        per_class = {'train': self.num_samples, 'val': 1, 'all': None}[self.split]
        data_list, listings, used, skipped = [], {}, [], []
        for wnid in classes:
            taken = 0
            for mask_file in files[wnid]:
                if per_class is not None and taken == per_class:
                    break
                mask_path = osp.join(self.mask_root, wnid, mask_file)
                if self.empty_masks == 'skip' and not self._has_object(mask_path):
                    skipped.append(mask_path)
                    continue
                data_list.append(dict(
                    img_path=self._find_image(wnid, mask_file, mask_path, listings),
                    mask_path=mask_path,
                    gt_label=int(label_of[wnid])))
                taken += 1
            if per_class is not None and taken < per_class:
                print_log(
                    f'ImageNetSMaskDataset: {osp.join(self.mask_root, wnid)!r} has {taken} usable '
                    f'masks, fewer than num_samples={per_class}; using all of them',
                    logger='current', level=30)
            used.append(taken)
        self.masks_per_class = dict(min=min(used, default=0), max=max(used, default=0))
        self.skipped_masks = skipped
        print_log(self.summary(len(classes), len(data_list)), logger='current')
        return data_list

    def summary(self, num_classes: int, num_masks: int) -> str:
        """The one-line summary logged after loading (what was actually used)."""
        asked = f' (num_samples={self.num_samples})' if self.split == 'train' else ''
        text = (f'ImageNetSMaskDataset {self.split} split of {self.mask_root!r}: {num_classes} '
                f'classes, {num_masks} masks; masks per class: min {self.masks_per_class["min"]}, '
                f'max {self.masks_per_class["max"]}{asked}')
        if self.empty_masks == 'skip':
            text += f'; {len(self.skipped_masks)} masks without an object skipped'
        return text

    @staticmethod
    def _has_object(mask_path: str) -> bool:
        raw = cv2.imread(mask_path, cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise ValueError(f'ImageNetSMaskDataset: cannot decode mask {mask_path!r}')
        return bool(object_pixels(decode_imagenet_s_mask(raw, mask_path)).any())

    def extra_repr(self) -> List[str]:
        return [
            f'Split: \t{self.split}',
            f'Mask root: \t{self.mask_root}',
            f'Image root: \t{self.img_root}',
            f'num_classes / num_samples / split_seed / class_order: \t'
            f'{self.num_classes} / {self.num_samples} / {self.split_seed} / {self.class_order}',
            f'Split file: \t{self.split_file}',
            f'Labels: \t{self.labels}',
            f'Masks per class used (min / max): \t'
            f'{self.masks_per_class["min"]} / {self.masks_per_class["max"]}',
        ]
