"""Distribution-shifted ImageNet test sets and the ImageNet-segmentation relevance test.

Every set reads its real on-disk layout (docs/evaluation.md) and labels each image with its
ImageNet-1k index (rank of the wnid in sorted order, ``imagenet_classes``):

==================  ==========================================  ============================
registered name     data_root                                   layout
==================  ==========================================  ============================
``ImageNetA``       ``imagenet-a/``                             ``<wnid>/*`` (200 classes)
``ImageNetR``       ``imagenet-r/``                             ``<wnid>/*`` (200 classes)
``ImageNetSketch``  ``sketch/``                                 ``<wnid>/*`` (1000 classes)
``ImageNetV2``      folder holding ``imagenetv2-<variant>-format-val/``, or that folder: ``<0..999>/*``
``ObjectNet``       ``objectnet-1.0/``                          ``images/<folder>/*`` + ``mappings/``
``SIScore``         ``si-score/``                               ``<factor folder>/<label>/*``
``ImageNetSegmentation``  folder of ``gtsegs_ijcv.mat``         MATLAB v7.3 (HDF5) file
==================  ==========================================  ============================

ImageNet val itself uses mmpretrain's ``ImageNet`` (``val/<wnid>/*``).

Metainfo (what ``ShiftedAccuracy`` reads through ``dataset_meta``):

- ``dataset_name``: short name used in the metric prefix, e.g. ``'imagenet-a'``;
- ``protocol``: ``'paper'`` (the released code: 1000-way argmax, first mapped ObjectNet class) or
  ``'standard'`` (IN-A/IN-R argmax over their 200 classes, ObjectNet over its 113 overlapping
  classes with any mapped class counting);
- ``eval_class_subset``: sorted ImageNet-1k indices the argmax is restricted to, or None.

Samples carry ``img_path``, ``gt_label`` (the first/only ImageNet-1k index) and, for ObjectNet,
``gt_label_set`` (every acceptable index; pack it with ``PackInputs(algorithm_keys=['gt_label_set'])``).
Stray files at the top level of a root are skipped with a warning (the released code crashed on
them); a wrong layout raises an error naming the path.
"""
import json
import os
import os.path as osp
import re
from functools import lru_cache

import numpy as np
from mmcv.transforms import BaseTransform
from mmengine.logging import MMLogger
from mmpretrain.datasets import BaseDataset
from mmpretrain.registry import DATASETS, TRANSFORMS

from .formats import IMAGE_EXTENSIONS
from .imagenet_classes import imagenet_class_names, imagenet_index, imagenet_wnids

PROTOCOLS = ('paper', 'standard')
DATA_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'data')

V2_VARIANTS = ('matched-frequency', 'threshold0.7', 'top-images')
# SI-Score factor -> the folder the released code evaluates (docs/evaluation.md).
SI_SCORE_FACTORS = {'area': 'area', 'location': 'location20_area02_min0pc', 'rotation': 'rotation'}
OBJECTNET_MAPPING_FILES = ('objectnet_to_imagenet_1k.json', 'folder_to_objectnet_label.json',
                           'pytorch_to_imagenet_2012_id.json', 'imagenet_to_label_2012_v2')


def dataset_location(dataset_cfg):
    """The file or folder that must exist for a robustness config's ``test_dataloader.dataset``
    (a dict with ``type`` and ``data_root``) to be on disk; the report skips sets whose location is
    missing. One home for "where does each set live" next to the classes that read it."""
    kind, root = dataset_cfg.get('type'), dataset_cfg.get('data_root') or ''
    kind = getattr(kind, '__name__', kind)
    if kind == 'SIScore':
        return osp.join(root, SI_SCORE_FACTORS[dataset_cfg.get('factor', 'area')])
    if kind == 'ImageNetSegmentation':
        return osp.join(root, dataset_cfg.get('ann_file', 'gtsegs_ijcv.mat'))
    if kind == 'ImageNet':  # mmpretrain's own: <data_root>/<split>/
        return osp.join(root, dataset_cfg.get('split') or 'val')
    return root


@lru_cache(maxsize=None)
def _package_json(name):
    path = osp.join(DATA_DIR, name)
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def imagenet_a_wnids():
    """The 200 (fixed, published) ImageNet-A wnids, sorted."""
    return tuple(_package_json('imagenet_a_wnids.json')['wnids'])


def imagenet_r_wnids():
    """The 200 (fixed, published) ImageNet-R wnids, sorted."""
    return tuple(_package_json('imagenet_r_wnids.json')['wnids'])


def si_score_labels():
    """SI-Score label string -> ImageNet-1k index (112 entries; see ``data/si_score_labels.json``)."""
    return dict(_package_json('si_score_labels.json')['labels'])


def _check_protocol(protocol, owner):
    if protocol not in PROTOCOLS:
        raise ValueError(f'{owner}: protocol={protocol!r}, expected one of {PROTOCOLS}')
    return protocol


def _without_strings(meta, user_metainfo):
    """``meta`` + the user's metainfo, minus our own string values: mmengine would try to read
    each string as a file of class names (and warn, or read a file that happens to be named so)."""
    out = {k: v for k, v in meta.items() if not isinstance(v, str)}
    out.update(user_metainfo or {})
    return out


def _set_strings(dataset, meta, user_metainfo):
    for key, value in meta.items():
        if isinstance(value, str) and key not in (user_metainfo or {}):
            dataset._metainfo[key] = value


def _class_folders(root, owner, expected):
    """Sorted sub-folders of ``root``; top-level files are skipped with a warning."""
    if not osp.isdir(root):
        raise FileNotFoundError(f'{owner}: {root!r} is not a directory; expected {expected}')
    folders, stray = [], []
    for entry in sorted(os.listdir(root)):
        if entry.startswith('.'):
            continue
        (folders if osp.isdir(osp.join(root, entry)) else stray).append(entry)
    if stray:
        shown = ', '.join(stray[:5]) + (', ...' if len(stray) > 5 else '')
        MMLogger.get_current_instance().warning(
            f'{owner}: skipped {len(stray)} file(s) at the top level of {root}: {shown}')
    if not folders:
        raise FileNotFoundError(f'{owner}: no class folders in {root!r}; expected {expected}')
    return folders


def _images(folder):
    return [osp.join(folder, name) for name in sorted(os.listdir(folder))
            if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith('.')
            and osp.isfile(osp.join(folder, name))]


class _ShiftedDataset(BaseDataset):
    """A test set labelled with ImageNet-1k indices; subclasses implement ``_samples()``.

    ``data_root`` is the set's folder; ``protocol`` goes into the metainfo for the metric.
    """

    DATASET_NAME = None
    LAYOUT = None  # what the root should look like, for error messages

    def __init__(self, data_root, pipeline=(), protocol='paper', metainfo=None, test_mode=True,
                 **kwargs):
        self.protocol = _check_protocol(protocol, type(self).__name__)
        meta = dict(classes=imagenet_class_names(), dataset_name=self.DATASET_NAME,
                    protocol=self.protocol, eval_class_subset=None)
        meta.update(self._extra_metainfo(data_root))
        super().__init__(ann_file='', metainfo=_without_strings(meta, metainfo), data_root=data_root,
                         data_prefix='', pipeline=pipeline, test_mode=test_mode, **kwargs)
        _set_strings(self, meta, metainfo)

    def _extra_metainfo(self, data_root):
        return {}

    def _samples(self, root):
        """Yield ``(img_path, gt_label, gt_label_set or None)``."""
        raise NotImplementedError

    def load_data_list(self):
        data_list = []
        for img_path, label, label_set in self._samples(self.data_root):
            info = dict(img_path=img_path, gt_label=int(label))
            if label_set is not None:
                info['gt_label_set'] = [int(i) for i in label_set]
            data_list.append(info)
        if not data_list:
            raise FileNotFoundError(f'{type(self).__name__}: found no images under '
                                    f'{self.data_root!r}; expected {self.LAYOUT} (image extensions '
                                    f'{", ".join(IMAGE_EXTENSIONS)})')
        return data_list


class _WnidFolderDataset(_ShiftedDataset):
    """``<data_root>/<wnid>/<image>``; optionally a fixed published subset of wnids."""

    LAYOUT = '<data_root>/<wnid>/<images> (e.g. n01440764/)'
    SUBSET = None  # callable -> the fixed wnid list of the set, or None for all 1000 classes

    def _extra_metainfo(self, data_root):
        if self.SUBSET is None or self.protocol == 'paper':
            return {}  # paper protocol: 1000-way argmax (docs/faithfulness.md#evaluation-protocols)
        return dict(eval_class_subset=sorted(imagenet_index(w, source='package data')
                                             for w in self.SUBSET()))

    def _samples(self, root):
        owner = type(self).__name__
        allowed = set(self.SUBSET()) if self.SUBSET is not None else None
        known = set(imagenet_wnids())
        for folder in _class_folders(root, owner, self.LAYOUT):
            path = osp.join(root, folder)
            if folder not in known:
                raise ValueError(f'{owner}: folder {path!r} is not an ImageNet-1k wnid; expected '
                                 f'{self.LAYOUT}')
            if allowed is not None and folder not in allowed:
                raise ValueError(f'{owner}: folder {path!r} is not one of the {len(allowed)} '
                                 f'{self.DATASET_NAME} classes; is data_root the right set?')
            label = imagenet_index(folder, source=path)
            for img in _images(path):
                yield img, label, None


@DATASETS.register_module()
class ImageNetA(_WnidFolderDataset):
    """ImageNet-A (Hendrycks et al. 2021): 7,500 natural adversarial images of 200 classes.

    ``data_root`` = the ``imagenet-a`` folder (``<wnid>/*.jpg``). Under ``protocol='standard'`` the
    argmax is restricted to the fixed, published 200 classes (``eval_class_subset``), whatever
    subset of folders is on disk.
    """

    DATASET_NAME = 'imagenet-a'
    SUBSET = staticmethod(imagenet_a_wnids)


@DATASETS.register_module()
class ImageNetR(_WnidFolderDataset):
    """ImageNet-R (Hendrycks et al. 2021): 30,000 renditions of 200 classes; see ``ImageNetA``."""

    DATASET_NAME = 'imagenet-r'
    SUBSET = staticmethod(imagenet_r_wnids)


@DATASETS.register_module()
class ImageNetSketch(_WnidFolderDataset):
    """ImageNet-Sketch (Wang et al. 2019): ~50,889 sketches of the 1000 classes, ``<wnid>/*``."""

    DATASET_NAME = 'imagenet-sketch'


@DATASETS.register_module()
class ImageNetV2(_ShiftedDataset):
    """ImageNet-V2 (Recht et al. 2019): 10,000 images, ``<0..999>/*``, label = int(folder).

    Args:
        data_root: the folder holding ``imagenetv2-<variant>-format-val/``, or that folder itself.
        variant: ``'matched-frequency'`` (default: ImageNet-V2's main set; the paper names none),
            ``'threshold0.7'`` or ``'top-images'``.
    """

    DATASET_NAME = 'imagenet-v2'
    LAYOUT = '<data_root>/imagenetv2-<variant>-format-val/<0..999>/<images>'

    def __init__(self, data_root, pipeline=(), variant='matched-frequency', **kwargs):
        if variant not in V2_VARIANTS:
            raise ValueError(f'ImageNetV2: variant={variant!r}, expected one of {V2_VARIANTS}')
        self.variant = variant
        self.DATASET_NAME = 'imagenet-v2' + ('' if variant == 'matched-frequency' else f'-{variant}')
        super().__init__(data_root, pipeline=pipeline, **kwargs)

    def _extra_metainfo(self, data_root):
        return dict(variant=self.variant)

    def _variant_root(self, root):
        folder = f'imagenetv2-{self.variant}-format-val'
        if osp.isdir(osp.join(root, folder)):
            return osp.join(root, folder)
        own = re.fullmatch(r'imagenetv2-(.+)-format-val', osp.basename(osp.normpath(root)))
        if own and own.group(1) != self.variant:
            raise ValueError(f'ImageNetV2: data_root {root!r} is the {own.group(1)!r} variant but '
                             f'variant={self.variant!r}')
        if own or (osp.isdir(root) and any(name.isdigit() for name in os.listdir(root))):
            return root
        raise FileNotFoundError(f'ImageNetV2: neither {osp.join(root, folder)!r} nor a folder of '
                                f'<0..999>/ class folders at {root!r}; expected {self.LAYOUT}')

    def _samples(self, root):
        root = self._variant_root(root)
        for folder in _class_folders(root, 'ImageNetV2', self.LAYOUT):
            path = osp.join(root, folder)
            if not folder.isdigit() or not 0 <= int(folder) < 1000:
                raise ValueError(f'ImageNetV2: folder {path!r} is not a class index 0..999; '
                                 f'expected {self.LAYOUT}')
            for img in _images(path):
                yield img, int(folder), None


@DATASETS.register_module()
class SIScore(_ShiftedDataset):
    """SI-Score (Djolonga et al. 2021): objects pasted on backgrounds, one factor varied.

    Args:
        data_root: the ``si-score`` folder holding the factor folders (or a factor folder itself).
        factor: ``'area'`` (folder ``area/``), ``'location'`` (``location20_area02_min0pc/``) or
            ``'rotation'`` (``rotation/``).

    Each factor folder holds ``<label string>/<images>``; the label string maps to an ImageNet-1k
    index through the shipped table ``data/si_score_labels.json`` (its provenance is written in it).
    """

    LAYOUT = '<data_root>/<factor folder>/<label string>/<images> (e.g. area/koala/)'

    def __init__(self, data_root, pipeline=(), factor='area', **kwargs):
        if factor not in SI_SCORE_FACTORS:
            raise ValueError(f'SIScore: factor={factor!r}, expected one of {tuple(SI_SCORE_FACTORS)}')
        self.factor = factor
        self.DATASET_NAME = f'si-score-{factor}'
        super().__init__(data_root, pipeline=pipeline, **kwargs)

    def _extra_metainfo(self, data_root):
        return dict(factor=self.factor)

    def _samples(self, root):
        folder = SI_SCORE_FACTORS[self.factor]
        factor_root = osp.join(root, folder)
        if not osp.isdir(factor_root) and osp.basename(osp.normpath(root)) == folder:
            factor_root = root
        table = si_score_labels()
        for label_str in _class_folders(factor_root, 'SIScore', self.LAYOUT):
            path = osp.join(factor_root, label_str)
            if label_str not in table:
                raise ValueError(f'SIScore: folder {path!r}: label {label_str!r} is not in the '
                                 f'SI-Score label table {osp.join(DATA_DIR, "si_score_labels.json")}')
            for img in _images(path):
                yield img, table[label_str], None


def _read_objectnet_mappings(mappings):
    """ObjectNet label -> list of ImageNet-1k indices, and folder -> ObjectNet label.

    The chain the released code follows: ObjectNet label -> "name1; name2" (ImageNet label names) ->
    line of ``imagenet_to_label_2012_v2`` -> torch (sorted-wnid) index via
    ``pytorch_to_imagenet_2012_id.json``.
    """
    paths = {}
    for name in OBJECTNET_MAPPING_FILES:
        paths[name] = osp.join(mappings, name)
        if not osp.isfile(paths[name]):
            raise FileNotFoundError(f'ObjectNet: mapping file {paths[name]!r} not found; ObjectNet '
                                    f'needs {", ".join(OBJECTNET_MAPPING_FILES)} in {mappings}/')

    def load(name):
        try:
            with open(paths[name], encoding='utf-8') as f:
                return json.load(f)
        except ValueError as err:
            raise ValueError(f'ObjectNet: {paths[name]!r} is not valid JSON ({err})') from None

    o_label_to_names = load('objectnet_to_imagenet_1k.json')
    folder_to_o_label = load('folder_to_objectnet_label.json')
    torch_idx_to_line = load('pytorch_to_imagenet_2012_id.json')
    with open(paths['imagenet_to_label_2012_v2'], encoding='utf-8') as f:
        # The reference strips the last character of every line (the newline).
        line_to_name = [line.rstrip('\r\n') for line in f]
    name_to_index = {}
    for torch_idx, line in torch_idx_to_line.items():
        if not 0 <= int(line) < len(line_to_name):
            raise ValueError(f'ObjectNet: {paths["pytorch_to_imagenet_2012_id.json"]!r} maps index '
                             f'{torch_idx} to line {line}, but {paths["imagenet_to_label_2012_v2"]!r}'
                             f' has {len(line_to_name)} lines')
        name_to_index[line_to_name[int(line)]] = int(torch_idx)
    o_label_to_indices = {}
    for o_label, names in o_label_to_names.items():
        indices = []
        for name in names.split('; '):
            if name not in name_to_index:
                raise ValueError(f'ObjectNet: ImageNet label {name!r} (for {o_label!r} in '
                                 f'{paths["objectnet_to_imagenet_1k.json"]!r}) is not a line of '
                                 f'{paths["imagenet_to_label_2012_v2"]!r}')
            indices.append(name_to_index[name])
        o_label_to_indices[o_label] = indices
    return o_label_to_indices, folder_to_o_label


@DATASETS.register_module()
class ObjectNet(_ShiftedDataset):
    """ObjectNet (Barbu et al. 2019), the 113 classes that overlap ImageNet-1k.

    ``data_root`` = the ``objectnet-1.0`` folder: images in ``images/<folder>/*``, the set's own
    mapping files in ``mappings/`` (a ``.../images`` root with a sibling ``mappings/`` also works).
    Images of ObjectNet classes outside the overlap are skipped.

    Each sample: ``gt_label`` = the FIRST mapped ImageNet-1k index (what the paper protocol scores
    against) and ``gt_label_set`` = all mapped indices (any counts under the standard protocol).
    ``eval_class_subset`` (standard protocol) = every ImageNet-1k index mapped from any of the
    overlapping ObjectNet classes in the mapping file. The standard protocol's 3-px border crop is
    the pipeline's ``CropBorder(pixels=3)``.
    """

    DATASET_NAME = 'objectnet'
    LAYOUT = '<data_root>/images/<folder>/<images> and <data_root>/mappings/'

    def _dirs(self, root):
        if osp.isdir(osp.join(root, 'images')):
            return osp.join(root, 'images'), osp.join(root, 'mappings')
        if osp.basename(osp.normpath(root)) == 'images' and osp.isdir(root):
            return root, osp.join(osp.dirname(osp.normpath(root)), 'mappings')
        raise FileNotFoundError(f'ObjectNet: no images/ folder in {root!r}; expected {self.LAYOUT}')

    def _mappings(self, root):
        if getattr(self, '_mapping_cache', None) is None:
            self._mapping_cache = _read_objectnet_mappings(self._dirs(root)[1])
        return self._mapping_cache

    def _extra_metainfo(self, data_root):
        o_label_to_indices, _ = self._mappings(data_root)
        if self.protocol == 'paper':
            return {}
        return dict(eval_class_subset=sorted({i for idx in o_label_to_indices.values() for i in idx}))

    def _samples(self, root):
        images, mappings = self._dirs(root)
        o_label_to_indices, folder_to_o_label = self._mappings(root)
        for folder in _class_folders(images, 'ObjectNet', self.LAYOUT):
            path = osp.join(images, folder)
            if folder not in folder_to_o_label:
                raise ValueError(f'ObjectNet: folder {path!r} is not in '
                                 f'{osp.join(mappings, "folder_to_objectnet_label.json")!r}')
            indices = o_label_to_indices.get(folder_to_o_label[folder])
            if indices is None:
                continue  # an ObjectNet class without an ImageNet-1k counterpart
            for img in _images(path):
                yield img, indices[0], indices


@TRANSFORMS.register_module()
class CropBorder(BaseTransform):
    """Cut ``pixels`` from each side of ``results['img']`` (ObjectNet's standard 3-px border crop:
    ObjectNet images carry a thin coloured frame). Apply right after loading, before resizing."""

    def __init__(self, pixels=3):
        if int(pixels) != pixels or pixels < 0:
            raise ValueError(f'CropBorder: pixels={pixels!r}, expected a non-negative integer')
        self.pixels = int(pixels)

    def transform(self, results):
        img = results['img']
        p = self.pixels
        h, w = img.shape[:2]
        if h <= 2 * p or w <= 2 * p:
            raise ValueError(f'CropBorder: image {results.get("img_path", "?")!r} is {h}x{w}, too '
                             f'small to cut {p} px from each side')
        if p:
            results['img'] = img[p:h - p, p:w - p]
            results['img_shape'] = results['img'].shape[:2]
        return results

    def __repr__(self):
        return f'{self.__class__.__name__}(pixels={self.pixels})'


@DATASETS.register_module()
class ImageNetSegmentation(BaseDataset):
    """ImageNet-segmentation (Guillaumin et al. 2014), 4,276 images with foreground masks, read from
    ``gtsegs_ijcv.mat`` (MATLAB v7.3 = HDF5, via h5py), as the released code's relevance test (paper Table 3).

    ``/value/img`` holds (N, 1) object references to (3, W, H) uint8 images; ``/value/gt`` holds
    (N, 1) references to cells whose element [0, 0] references the (W, H) binary mask.

    Items carry ``img`` (uint8 (H, W, 3), BGR like ``LoadImageFromFile``), ``fg_mask`` (float32
    (H, W), 1 = object), ``ignore_mask`` (zeros), ``img_shape``/``ori_shape`` and ``img_path`` =
    ``'<file>[<i>]'``. No ``gt_label``: the test explains the PREDICTED class (docs/faithfulness.md#segmentation-test). The pipeline
    therefore starts without ``LoadImageFromFile``, e.g. ``WithMask(Resize 224x224)`` then
    ``PackInputs(algorithm_keys=['fg_mask'])``.
    """

    DATASET_NAME = 'imagenet-segmentation'
    EXPECTED = ('a MATLAB v7.3 (HDF5) file with /value/img and /value/gt, each an (N, 1) array of '
                'object references (the Transformer-Explainability gtsegs_ijcv.mat)')

    def __init__(self, data_root='', ann_file='gtsegs_ijcv.mat', pipeline=(), protocol='paper',
                 metainfo=None, test_mode=True, **kwargs):
        self.protocol = _check_protocol(protocol, 'ImageNetSegmentation')
        meta = dict(classes=imagenet_class_names(), dataset_name=self.DATASET_NAME,
                    protocol=self.protocol, eval_class_subset=None)
        self._h5 = None
        self._h5_pid = None
        super().__init__(ann_file=ann_file, metainfo=_without_strings(meta, metainfo),
                         data_root=data_root, data_prefix='', pipeline=pipeline,
                         test_mode=test_mode, **kwargs)
        _set_strings(self, meta, metainfo)

    def _file(self):
        import h5py
        if self._h5 is None or self._h5_pid != os.getpid():  # one handle per (worker) process
            try:
                self._h5 = h5py.File(self.ann_file, 'r')
            except FileNotFoundError:
                raise FileNotFoundError(f'ImageNetSegmentation: {self.ann_file!r} not found; '
                                        f'expected {self.EXPECTED}') from None
            except OSError as err:
                raise ValueError(f'ImageNetSegmentation: cannot open {self.ann_file!r} as HDF5 '
                                 f'({err}); expected {self.EXPECTED} (save it with -v7.3)') from None
            self._h5_pid = os.getpid()
        return self._h5

    def __getstate__(self):
        state = self.__dict__.copy()
        state['_h5'] = state['_h5_pid'] = None  # h5py handles do not cross processes
        return state

    def _refs(self, key):
        import h5py
        f = self._file()
        node = f.get(f'value/{key}')
        if not isinstance(node, h5py.Dataset) or h5py.check_dtype(ref=node.dtype) is None \
                or node.ndim != 2 or node.shape[1] != 1:
            found = 'missing' if node is None else f'{type(node).__name__} {getattr(node, "shape", "")}'
            raise ValueError(f'ImageNetSegmentation: {self.ann_file!r}: /value/{key} is {found}; '
                             f'expected {self.EXPECTED}')
        return node

    def load_data_list(self):
        num = len(self._refs('img'))
        if len(self._refs('gt')) != num or num == 0:
            raise ValueError(f'ImageNetSegmentation: {self.ann_file!r} has {num} images and '
                             f'{len(self._refs("gt"))} masks; expected the same non-zero number')
        self.read_item(0)  # fail early on a wrong structure
        return [dict(img_path=f'{self.ann_file}[{i}]', mat_index=i) for i in range(num)]

    def read_item(self, index):
        """``(img (H, W, 3) uint8 RGB, mask (H, W) float32 0/1)`` of entry ``index``."""
        f = self._file()
        where = f'ImageNetSegmentation: {self.ann_file!r} entry {index}'
        try:
            img = np.asarray(f[self._refs('img')[index, 0]])
            cell = f[self._refs('gt')[index, 0]]
            mask = np.asarray(f[cell[0, 0]])
        except (TypeError, ValueError, KeyError, IndexError) as err:
            raise ValueError(f'{where}: cannot dereference ({err}); expected {self.EXPECTED}') from None
        if img.ndim != 3 or img.shape[0] != 3:
            raise ValueError(f'{where}: image array of shape {img.shape}, expected (3, W, H)')
        img = np.ascontiguousarray(img.transpose(2, 1, 0)).astype(np.uint8, copy=False)
        if mask.ndim != 2 or mask.T.shape != img.shape[:2]:
            raise ValueError(f'{where}: mask of shape {mask.shape} does not match the (3, W, H) '
                             f'image {img.shape[1::-1]}; expected a (W, H) mask')
        return img, (mask.T > 0).astype(np.float32)

    def prepare_data(self, idx):
        info = self.get_data_info(idx)
        img, mask = self.read_item(info['mat_index'])
        info.update(img=np.ascontiguousarray(img[..., ::-1]),  # RGB -> BGR, like LoadImageFromFile
                    fg_mask=mask, ignore_mask=np.zeros_like(mask),
                    img_shape=img.shape[:2], ori_shape=img.shape[:2])
        return self.pipeline(info)
