"""Miniatures of every real layout of the shifted test sets, written to disk by the tests: real JPEG/PNG
files, ObjectNet's mapping files, a MATLAB v7.3 ``gtsegs_ijcv.mat`` written with h5py."""
import json
import os
import os.path as osp

import numpy as np
from PIL import Image

from robustvit_mm.datasets.imagenet_classes import imagenet_wnids

WNIDS = imagenet_wnids()

# ImageNet-A miniature: 3 of the 200 classes (indices 6 stingray, 11 goldfinch, 13 junco).
A_CLASSES = {WNIDS[6]: 2, WNIDS[11]: 2, WNIDS[13]: 2}
# ImageNet-R miniature: indices 1 goldfish, 6 stingray.
R_CLASSES = {WNIDS[1]: 1, WNIDS[6]: 2}
# ImageNet-Sketch miniature: indices 0 tench x2, 6 x1, 13 x1.
SKETCH_CLASSES = {WNIDS[0]: 2, WNIDS[6]: 1, WNIDS[13]: 1}
# ImageNet-V2 miniature: folders are the indices.
V2_CLASSES = {'0': 2, '3': 1, '999': 1}
# ImageNet val miniature: all 1000 wnid folders, images in 3 of them (0, 1, 13).
VAL_CLASSES = {WNIDS[0]: 1, WNIDS[1]: 1, WNIDS[13]: 1}
# SI-Score miniature: label folders -> 105 koala, 9 ostrich, 605 ipod.
SI_CLASSES = {'koala': 2, 'ostrich': 1, 'ipod': 1}

# ObjectNet miniature. ImageNet names live on lines of imagenet_to_label_2012_v2 in REVERSED torch
# order (line = 999 - index), so the whole mapping chain is exercised.
OBJECTNET_NAMES = {409: 'analog clock', 530: 'digital clock', 954: 'banana', 559: 'folding chair',
                   765: 'rocking chair, rocker'}
OBJECTNET_TO_IMAGENET = {'Alarm clock': 'analog clock; digital clock', 'Banana': 'banana',
                         'Chair': 'folding chair; rocking chair, rocker'}
FOLDER_TO_OBJECTNET = {'alarm_clock': 'Alarm clock', 'banana': 'Banana', 'chair': 'Chair',
                       'air_freshener': 'Air freshener'}
# On disk: 2 alarm clocks, 3 bananas, 1 air freshener (not an ImageNet class: skipped), no chair.
OBJECTNET_FOLDERS = {'alarm_clock': 2, 'banana': 3, 'air_freshener': 1}
OBJECTNET_SUBSET = [409, 530, 559, 765, 954]


def write_image(path, size=(30, 40), seed=0, ext=None):
    """A small random RGB image (H, W) = ``size``; the format follows the extension."""
    rng = np.random.default_rng(seed)
    os.makedirs(osp.dirname(path), exist_ok=True)
    Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8)).save(path)
    return path


def make_folder_set(root, classes, ext='.jpg', stray=True):
    """``root/<folder>/<i><ext>`` for ``classes`` = {folder: count}; plus a stray README file."""
    seed = 0
    for folder, count in classes.items():
        for i in range(count):
            write_image(osp.join(root, folder, f'{i:03d}{ext}'), seed=seed)
            seed += 1
    if stray:
        with open(osp.join(root, 'README.txt'), 'w') as f:
            f.write('stray top-level file (the real tarballs may ship one)\n')
    return root


def make_imagenet_val(root, classes=VAL_CLASSES):
    """``root/val/<wnid>/*.JPEG`` with all 1000 wnid folders (mmpretrain's ImageNet needs them)."""
    for wnid in WNIDS:
        os.makedirs(osp.join(root, 'val', wnid), exist_ok=True)
    make_folder_set(osp.join(root, 'val'), classes, ext='.JPEG', stray=False)
    return root


def make_objectnet(root, folders=OBJECTNET_FOLDERS, with_mappings=True):
    """``root/images/<folder>/*.png`` and ``root/mappings/`` with the 4 mapping files."""
    make_folder_set(osp.join(root, 'images'), folders, ext='.png')
    if with_mappings:
        mappings = osp.join(root, 'mappings')
        os.makedirs(mappings, exist_ok=True)
        lines = [f'imagenet label {999 - line}' for line in range(1000)]
        for index, name in OBJECTNET_NAMES.items():
            lines[999 - index] = name
        with open(osp.join(mappings, 'imagenet_to_label_2012_v2'), 'w') as f:
            f.write(''.join(line + '\n' for line in lines))
        with open(osp.join(mappings, 'pytorch_to_imagenet_2012_id.json'), 'w') as f:
            json.dump({str(i): 999 - i for i in range(1000)}, f)
        with open(osp.join(mappings, 'objectnet_to_imagenet_1k.json'), 'w') as f:
            json.dump(OBJECTNET_TO_IMAGENET, f)
        with open(osp.join(mappings, 'folder_to_objectnet_label.json'), 'w') as f:
            json.dump(FOLDER_TO_OBJECTNET, f)
    return root


def make_si_score(root, classes=SI_CLASSES):
    """``root/{area,location20_area02_min0pc,rotation}/<label>/*.jpg``."""
    for folder in ('area', 'location20_area02_min0pc', 'rotation'):
        make_folder_set(osp.join(root, folder), classes, stray=False)
    return root


def make_v2(root, classes=V2_CLASSES, variant='matched-frequency'):
    return make_folder_set(osp.join(root, f'imagenetv2-{variant}-format-val'), classes,
                           ext='.jpeg')


def seg_examples():
    """Two (RGB image (H, W, 3) uint8, mask (H, W) 0/1) pairs of different sizes."""
    rng = np.random.default_rng(7)
    out = []
    for h, w in ((20, 28), (26, 18)):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        mask = np.zeros((h, w), np.uint8)
        mask[h // 4:3 * h // 4, w // 3:w - 2] = 1
        out.append((img, mask))
    return out


def make_gtsegs_mat(path, examples=None):
    """A tiny MATLAB v7.3 (HDF5) file laid out like gtsegs_ijcv.mat.

    ``/value/img``: (N, 1) references to (3, W, H) uint8 arrays; ``/value/gt``: (N, 1) references to
    (1, 1) cells of references to (W, H) masks (MATLAB stores arrays transposed).
    """
    import h5py
    examples = seg_examples() if examples is None else examples
    os.makedirs(osp.dirname(path) or '.', exist_ok=True)
    with h5py.File(path, 'w') as f:
        refs = f.create_group('#refs#')
        img_refs = np.empty((len(examples), 1), dtype=h5py.ref_dtype)
        gt_refs = np.empty((len(examples), 1), dtype=h5py.ref_dtype)
        for i, (img, mask) in enumerate(examples):
            img_refs[i, 0] = refs.create_dataset(f'img{i}', data=img.transpose(2, 1, 0)).ref
            mask_ds = refs.create_dataset(f'gt{i}', data=mask.T)
            cell = refs.create_dataset(f'cell{i}', data=np.array([[mask_ds.ref]],
                                                               dtype=h5py.ref_dtype))
            gt_refs[i, 0] = cell.ref
        value = f.create_group('value')
        value.create_dataset('img', data=img_refs)
        value.create_dataset('gt', data=gt_refs)
    return path
