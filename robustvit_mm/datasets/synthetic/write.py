"""The on-disk benchmark: :func:`write_benchmark` in the ImageNet-S / ImageFolder layouts, written
atomically, and :func:`set_data_root` to point a loaded config at it."""
import csv
import json
import os
import os.path as osp
import shutil
import tempfile
import uuid

from PIL import Image

from ..formats import encode_imagenet_s_mask
from .render import (GENERATOR_VERSION, JPEG_QUALITY, PATCH_SIZE, _check_image_size,
                     _check_num_classes, _check_p_match, class_names, generate_split, tile_sizes)

__all__ = ['LAYOUT', 'write_benchmark', 'set_data_root']


def _params(seed, num_classes, image_size, pretrain_per_class, masked_per_class,
            masked_val_per_class, test_per_class, p_match, pretrain_random_share=0.0):
    return dict(seed=int(seed), num_classes=int(num_classes), image_size=int(image_size),
                pretrain_per_class=int(pretrain_per_class), masked_per_class=int(masked_per_class),
                masked_val_per_class=int(masked_val_per_class), test_per_class=int(test_per_class),
                p_match=float(p_match), pretrain_random_share=float(pretrain_random_share))


def _read_meta(out_dir):
    try:
        with open(osp.join(out_dir, 'meta.json'), encoding='utf-8') as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _is_current(out_dir, params):
    meta = _read_meta(out_dir)
    return (meta is not None and meta.get('generator') == GENERATOR_VERSION
            and meta.get('params') == params)


def _replaceable(out_dir):
    """True if ``out_dir`` may be replaced: an empty dir or an earlier benchmark (has our meta.json)."""
    if not osp.isdir(out_dir):
        raise FileExistsError(f'{out_dir} exists and is not a directory')
    if not os.listdir(out_dir):
        return True
    meta = _read_meta(out_dir)
    return isinstance(meta, dict) and str(meta.get('generator', '')).startswith('synthetic-spurious')


# split -> (image dir, mask dir or None) relative to out_dir
LAYOUT = {
    'pretrain': ('pretrain', None),
    'masked': ('masked/images', 'masked/masks'),
    'masked_val': ('masked_val/images', 'masked_val/masks'),
    'test_in_dist': ('test_in_dist', 'test_in_dist_masks'),
    'test_shifted': ('test_shifted', 'test_shifted_masks'),
}


def _write_split(root, split, arrays, names, rows):
    img_dir, mask_dir = LAYOUT[split]
    n = len(arrays['labels'])
    width = max(5, len(str(max(n - 1, 0))))
    for name in names:
        os.makedirs(osp.join(root, img_dir, name), exist_ok=True)
        if mask_dir:
            os.makedirs(osp.join(root, mask_dir, name), exist_ok=True)
    for i in range(n):
        cls = names[arrays['labels'][i]]
        stem = f'{i:0{width}d}'
        img_rel = f'{img_dir}/{cls}/{stem}.JPEG'
        Image.fromarray(arrays['images'][i]).save(
            osp.join(root, img_rel), format='JPEG', quality=JPEG_QUALITY, subsampling=0)
        mask_rel = ''
        if mask_dir:
            mask_rel = f'{mask_dir}/{cls}/{stem}.png'
            Image.fromarray(encode_imagenet_s_mask(arrays['masks'][i].astype(bool))).save(
                osp.join(root, mask_rel), format='PNG', compress_level=1)
        rows.append((split, img_rel, mask_rel, int(arrays['labels'][i]),
                     int(arrays['background_labels'][i]), int(arrays['digit_indices'][i]),
                     *(int(v) for v in arrays['tiles'][i])))


def write_benchmark(out_dir, seed=0, num_classes=10, image_size=32, pretrain_per_class=500,
                    masked_per_class=10, masked_val_per_class=5, test_per_class=100, p_match=0.9,
                    pretrain_random_share=0.0):
    """Write the benchmark under ``out_dir`` in the layout below; return the meta dict (meta.json).

    Layout (``<cls>`` = ``class_0`` ..., zero-padded; file stems are the split's sample index)::

        pretrain/<cls>/<i>.JPEG                          ImageFolder, biased, no masks (plain CE)
        masked/images/<cls>/<i>.JPEG                     ImageNet-S layout, biased: fine-tuning set
        masked/masks/<cls>/<i>.png                       RGB PNG, id = G * 256 + R: 1 = object, 0 = bg
        masked_val/images|masks/<cls>/...                the same, for validation while fine-tuning
        test_in_dist/<cls>/<i>.JPEG (+ test_in_dist_masks/<cls>/<i>.png)   biased (p_match)
        test_shifted/<cls>/<i>.JPEG (+ test_shifted_masks/<cls>/<i>.png)   background never matches
        samples.csv                                      split, paths, label, background_label, ...
        meta.json                                        parameters, class names, counts, version

    ``pretrain_random_share``: that share of the pretraining images gets a background drawn
    uniformly over all classes (the other splits are unchanged); 0 writes the same data as without it.
    JPEG quality 95 without chroma subsampling (small artefacts remain; masks are exact PNGs).
    If ``out_dir/meta.json`` already records the same parameters and generator version, nothing is
    written (fast). Otherwise everything is written to a temporary sibling directory which is then
    renamed into place, so an interrupted run leaves no half-written benchmark. An existing
    ``out_dir`` is replaced only if it is empty or an earlier benchmark (else ``FileExistsError``).
    """
    _check_num_classes(num_classes)
    _check_image_size(image_size)
    _check_p_match(p_match)
    if not 0.0 <= float(pretrain_random_share) <= 1.0:
        raise ValueError(f'pretrain_random_share must be in [0, 1], got {pretrain_random_share!r}')
    params = _params(seed, num_classes, image_size, pretrain_per_class, masked_per_class,
                     masked_val_per_class, test_per_class, p_match, pretrain_random_share)
    for key, value in params.items():
        if value < 0:
            raise ValueError(f'{key} must be >= 0, got {value}')
    out_dir = osp.abspath(osp.expanduser(str(out_dir)))
    if _is_current(out_dir, params):
        return _read_meta(out_dir)
    if osp.exists(out_dir) and not _replaceable(out_dir):
        raise FileExistsError(f'{out_dir} exists and is not a synthetic benchmark (no meta.json of '
                              f'{GENERATOR_VERSION}); refusing to overwrite it')

    parent, name = osp.split(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f'.{name}.tmp-', dir=parent)
    try:
        names = class_names(num_classes)
        per_class = dict(pretrain=pretrain_per_class, masked=masked_per_class,
                         masked_val=masked_val_per_class, test_in_dist=test_per_class,
                         test_shifted=test_per_class)
        rows, counts, matched = [], {}, {}
        for split, n in per_class.items():
            arrays = generate_split(n, p_match, seed, split, num_classes=num_classes,
                                    image_size=image_size,
                                    random_share=pretrain_random_share if split == 'pretrain' else 0)
            _write_split(tmp, split, arrays, names, rows)
            counts[split] = int(len(arrays['labels']))
            matched[split] = int((arrays['labels'] == arrays['background_labels']).sum())
        with open(osp.join(tmp, 'samples.csv'), 'w', newline='', encoding='utf-8') as f:
            writer = csv.writer(f)
            writer.writerow(('split', 'image', 'mask', 'label', 'background_label', 'digit_index',
                             'tile_y0', 'tile_x0', 'tile_size'))
            writer.writerows(rows)
        meta = dict(
            generator=GENERATOR_VERSION, params=params, class_names=list(names), counts=counts,
            matched_background=matched,
            layout={k: dict(images=v[0], masks=v[1]) for k, v in LAYOUT.items()},
            patch_size=PATCH_SIZE, tile_sizes=list(tile_sizes(image_size)),
            mask_encoding='RGB PNG, id = G * 256 + R; 1 = object (the tile), 0 = background',
            image_format=f'JPEG quality {JPEG_QUALITY}, 4:4:4, RGB',
            glyphs='sklearn load_digits; first half of each digit class for pretrain/masked/'
                   'masked_val, second half for test_in_dist/test_shifted; classes >= 10 rotated 90')
        with open(osp.join(tmp, 'meta.json'), 'w', encoding='utf-8') as f:   # written last
            json.dump(meta, f, indent=2)
        os.chmod(tmp, 0o755)

        if osp.exists(out_dir):
            old = osp.join(parent, f'.{name}.old-{uuid.uuid4().hex[:8]}')
            os.rename(out_dir, old)
            os.rename(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.rename(tmp, out_dir)
            except OSError:
                if not _is_current(out_dir, params):   # someone else wrote something else meanwhile
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # a concurrent run wrote the same benchmark
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def set_data_root(cfg, data_root):
    """Point every ``*_dataloader`` of a loaded config (``mmengine.Config`` or dict) at ``data_root``.

    mmengine evaluates ``data_root=data_root`` once, in the base file, so changing ``cfg.data_root``
    afterwards does not reach the dataloaders; this rewrites ``cfg.data_root`` and the ``data_root`` of
    each ``<name>_dataloader.dataset`` (including ``dataset.dataset`` of wrappers). Returns ``cfg``.
    """
    data_root = str(data_root)
    cfg['data_root'] = data_root
    for key in list(cfg.keys()):
        loader = cfg[key]
        if not (key.endswith('_dataloader') and isinstance(loader, dict)):
            continue
        dataset = loader.get('dataset')
        while isinstance(dataset, dict):
            if 'data_root' in dataset or 'type' in dataset and 'dataset' not in dataset:
                dataset['data_root'] = data_root
            dataset = dataset.get('dataset')
    return cfg
