"""A tiny ImageNet-S-style tree on disk, for tests (real JPEG images, real PNG masks).

    from mini_imagenet_s import make_imagenet_s_tree
    tree = make_imagenet_s_tree(tmp_path)            # 6 classes x 4 images of 40x48 (H x W)
    ds = ImageNetSMaskDataset(data_root=tree['data_root'], data_prefix=tree['data_prefix'],
                              split='train', num_classes=4, num_samples=2)

Layout (what ``ImageNetSMaskDataset`` expects, ImageNet-S919 style)::

    <root>/train/<wnid>/<wnid>_<1000+j>.JPEG
    <root>/train-semi-segmentation/<wnid>/<wnid>_<1000+j>.png

Each image is dark noise (values <= 60) with one bright rectangle (the object, values >= 190 in
every channel), so the object is easy to tell apart even after JPEG compression. The mask PNG uses
the official ImageNet-S encoding id = G*256 + R (RGB order, B = 0): the rectangle carries the class's
ImageNet-S category id (``CATEGORY_IDS``, several > 255 so the G channel matters), a 1-pixel ring
around it is "ignore" (1000), the rest is 0 ("other").
"""
import os
import os.path as osp

import numpy as np
from PIL import Image

IGNORE_ID = 1000
# ImageNet-S category ids used per class (cycled): 300 = G1 R44, 919 = G3 R151, 256 = G1 R0.
CATEGORY_IDS = (300, 919, 7, 256, 511, 42)


def default_wnids(num_classes):
    """``num_classes`` real ImageNet-1k wnids, evenly spaced in sorted order (none is merged)."""
    from robustvit_mm.datasets.imagenet_classes import imagenet_wnids
    from robustvit_mm.datasets.imagenet_s import MERGED_TAGS
    pool = [w for w in imagenet_wnids() if w not in MERGED_TAGS]
    step = max(1, len(pool) // max(num_classes, 1))
    return [pool[i * step] for i in range(num_classes)]


def write_mask_png(path, ids):
    """Write ImageNet-S ids (H, W) as an RGB PNG in the official encoding."""
    from robustvit_mm.datasets import encode_imagenet_s_mask
    Image.fromarray(encode_imagenet_s_mask(np.asarray(ids, np.int64)), mode='RGB').save(path)


def make_imagenet_s_tree(root, num_classes=6, per_class=4, size=(40, 48), seed=0, wnids=None,
                         img_dir='train', mask_dir='train-semi-segmentation', ignore_ring=True):
    """Write a mini ImageNet-S tree under ``root``; returns a dict describing it.

    Args:
        root: Directory (created if needed) that becomes ``data_root``.
        num_classes, per_class: Class folders and images per class.
        size: (H, W) of every image and mask.
        seed: Seed of the rectangle positions and pixel noise.
        wnids: Class folder names, in the order the folders are created (default: ``num_classes``
            real ImageNet-1k wnids). May include names that are not ImageNet wnids.
        img_dir, mask_dir: Folder names under ``root``.
        ignore_ring: Draw a 1-pixel ignore (1000) ring around each object.

    Returns:
        dict with ``data_root``, ``data_prefix`` (dict(img_path=img_dir, mask_path=mask_dir)),
        ``img_root``, ``mask_root``, ``wnids`` (creation order), ``category_ids`` ({wnid: id}),
        ``boxes`` ({mask path: (y0, x0, y1, x1)}, object = rows y0:y1, cols x0:x1) and ``size``.
    """
    root = str(root)
    h, w = size
    if wnids is None:
        wnids = default_wnids(num_classes)
    wnids = list(wnids)
    rng = np.random.default_rng(seed)
    img_root, mask_root = osp.join(root, img_dir), osp.join(root, mask_dir)
    category_ids, boxes = {}, {}
    for c, wnid in enumerate(wnids):
        cat = CATEGORY_IDS[c % len(CATEGORY_IDS)]
        category_ids[wnid] = cat
        os.makedirs(osp.join(img_root, wnid), exist_ok=True)
        os.makedirs(osp.join(mask_root, wnid), exist_ok=True)
        for j in range(per_class):
            name = f'{wnid}_{1000 + j}'
            bh = int(rng.integers(h // 4, h // 2 + 1))
            bw = int(rng.integers(w // 4, w // 2 + 1))
            y0 = int(rng.integers(2, h - bh - 1))
            x0 = int(rng.integers(2, w - bw - 1))
            y1, x1 = y0 + bh, x0 + bw
            img = rng.integers(0, 61, size=(h, w, 3), dtype=np.uint8)
            img[y0:y1, x0:x1] = rng.integers(190, 256, size=3, dtype=np.uint8)
            Image.fromarray(img, mode='RGB').save(osp.join(img_root, wnid, name + '.JPEG'),
                                                  format='JPEG', quality=95)
            ids = np.zeros((h, w), np.int64)
            if ignore_ring:
                ids[y0 - 1:y1 + 1, x0 - 1:x1 + 1] = IGNORE_ID
            ids[y0:y1, x0:x1] = cat
            mask_path = osp.join(mask_root, wnid, name + '.png')
            write_mask_png(mask_path, ids)
            boxes[mask_path] = (y0, x0, y1, x1)
    return dict(data_root=root, data_prefix=dict(img_path=img_dir, mask_path=mask_dir),
                img_root=img_root, mask_root=mask_root, wnids=wnids, category_ids=category_ids,
                boxes=boxes, size=(h, w))
