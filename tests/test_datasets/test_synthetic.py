"""The spurious-background benchmark generator: determinism, exact masks, bias, layout, dataset, config."""
import csv
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest
from scipy.stats import chisquare

from robustvit_mm.datasets import synthetic
from robustvit_mm.datasets.synthetic import (PATCH_SIZE, SyntheticSpuriousDataset, class_names,
                                             generate_split, render_sample, set_data_root,
                                             write_benchmark)
from stock_run_helpers import REPO

K = 10
SMALL = dict(pretrain_per_class=3, masked_per_class=2, masked_val_per_class=1, test_per_class=2)


@pytest.fixture(scope='module')
def pretrain():
    return generate_split(100, 0.9, 0, 'pretrain')          # 1000 samples, biased, train glyphs


@pytest.fixture(scope='module')
def in_dist():
    return generate_split(100, 0.9, 0, 'test_in_dist')      # 1000 samples, biased, test glyphs


@pytest.fixture(scope='module')
def shifted():
    return generate_split(100, 0.9, 0, 'test_shifted')      # 1000 samples, never matching


@pytest.fixture(scope='module')
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp('bench') / 'seed3'
    meta = write_benchmark(root, seed=3, num_classes=3, **SMALL)
    return root, meta


# ------------------------------------------------------------------------------------ generator
def test_render_sample_deterministic_per_seed():
    a = render_sample(np.random.default_rng(5), 3, 7)
    b = render_sample(np.random.default_rng(5), 3, 7)
    c = render_sample(np.random.default_rng(6), 3, 7)
    assert a[0].dtype == np.uint8 and a[0].shape == (32, 32, 3)
    assert a[1].dtype == np.uint8 and a[1].shape == (32, 32)
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()
    assert a[0].tobytes() != c[0].tobytes()


def test_generate_split_deterministic_per_seed_and_split():
    a = generate_split(3, 0.9, 0, 'masked')
    b = generate_split(3, 0.9, 0, 'masked')
    c = generate_split(3, 0.9, 1, 'masked')
    d = generate_split(3, 0.9, 0, 'masked_val')
    for key in a:
        assert a[key].tobytes() == b[key].tobytes(), key
    assert a['images'].tobytes() != c['images'].tobytes()
    assert a['images'].tobytes() != d['images'].tobytes()
    # one stream per split: 'train' is 'pretrain', and sizes of one split do not move another
    assert generate_split(2, 0.9, 0, 'train')['images'].tobytes() == \
        generate_split(2, 0.9, 0, 'pretrain')['images'].tobytes()
    np.testing.assert_array_equal(a['labels'], np.repeat(np.arange(K), 3))


def test_mask_is_exactly_the_object():
    """Same random stream, another background: only pixels OUTSIDE the mask change; another label
    (object): only pixels INSIDE change. So the mask is exactly the object tile."""
    for seed in range(20):
        img, mask, info = render_sample(np.random.default_rng(seed), 2, 5, return_info=True)
        img_bg, mask_bg = render_sample(np.random.default_rng(seed), 2, 8)
        img_obj, mask_obj = render_sample(np.random.default_rng(seed), 4, 5)
        assert (mask == mask_bg).all() and (mask == mask_obj).all()
        inside = mask.astype(bool)
        assert (img[inside] == img_bg[inside]).all()
        assert (img[~inside] != img_bg[~inside]).any(-1).mean() > 0.95
        assert (img[~inside] == img_obj[~inside]).all()
        assert (img[inside] != img_obj[inside]).any()
        y0, x0, size = info['tile']
        expected = np.zeros_like(mask)
        expected[y0:y0 + size, x0:x0 + size] = 1
        np.testing.assert_array_equal(mask, expected)
        # the tile is dark and every background is bright: the object is visible on any background
        value = img.max(-1)
        assert (value[inside] < 70).mean() > 0.3 and (value[~inside] < 70).mean() == 0


def test_masks_on_the_patch_grid(pretrain):
    masks, tiles = pretrain['masks'], pretrain['tiles']
    assert set(np.unique(masks)) == {0, 1}
    assert set(tiles[:, 2]) == {12, 16}
    assert (tiles[:, :2] % PATCH_SIZE == 0).all() and (tiles[:, :2] + tiles[:, 2:] <= 32).all()
    n = len(masks)
    patch_means = masks.reshape(n, 8, 4, 8, 4).mean(axis=(2, 4))
    assert np.isin(patch_means, (0.0, 1.0)).all()   # every patch all object or all background
    np.testing.assert_array_equal(masks.sum((1, 2)), tiles[:, 2] ** 2)
    # tile size and position vary
    assert len({tuple(t) for t in tiles}) > 30


def test_p_match_in_biased_splits(pretrain, in_dist):
    sigma = np.sqrt(0.9 * 0.1 / 1000)
    for arrays in (pretrain, in_dist):
        frac = (arrays['labels'] == arrays['background_labels']).mean()
        assert abs(frac - 0.9) < 4 * sigma, frac
        mism = arrays['labels'] != arrays['background_labels']
        # mismatched backgrounds are spread over the other classes
        assert len(np.unique(arrays['background_labels'][mism])) >= 8
    masked = generate_split(300, 0.9, 1, 'masked', num_classes=3)    # 900 samples
    assert abs((masked['labels'] == masked['background_labels']).mean() - 0.9) < 4 * sigma * 1.06
    ext = generate_split(20, 0.0, 0, 'masked')
    assert (ext['labels'] != ext['background_labels']).all()
    ext = generate_split(20, 1.0, 0, 'masked')
    assert (ext['labels'] == ext['background_labels']).all()


def test_shifted_never_matches_and_is_class_independent(shifted):
    labels, bgs = shifted['labels'], shifted['background_labels']
    assert (labels != bgs).all()
    table = np.zeros((K, K), dtype=int)
    np.add.at(table, (labels, bgs), 1)
    off = ~np.eye(K, dtype=bool)
    assert (table[off] > 0).all()                     # every (class, other background) pair appears
    for k in range(K):                                # each row uniform over the 9 other backgrounds
        assert chisquare(table[k][off[k]]).pvalue > 1e-3
    assert chisquare(table.sum(0)).pvalue > 1e-3       # no background dominates overall
    assert table.sum(0).max() < 2 * len(labels) / K


def test_train_and_test_glyph_instances_differ(pretrain, in_dist, shifted):
    train = set(pretrain['digit_indices'].tolist())
    test = set(in_dist['digit_indices'].tolist()) | set(shifted['digit_indices'].tolist())
    assert not train & test
    assert len(train) > 300 and len(test) > 300      # many instances of each class are used


def _nearest_centroid(x_train, y_train, x_test, num_classes=K):
    centroids = np.stack([x_train[y_train == k].mean(0) for k in range(num_classes)])
    return ((x_test[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)


def _tile_features(arrays):
    feats = []
    for img, (y0, x0, size) in zip(arrays['images'], arrays['tiles']):
        crop = img[y0:y0 + size, x0:x0 + size].astype(np.float32).max(-1)
        f = cv2.resize(crop, (8, 8), interpolation=cv2.INTER_AREA).ravel()
        f -= f.mean()
        feats.append(f / (np.linalg.norm(f) + 1e-6))
    return np.stack(feats)


def _background_features(arrays):
    return np.stack([img[m == 0].astype(np.float32).mean(0)
                     for img, m in zip(arrays['images'], arrays['masks'])])


def test_object_alone_predicts_the_label(pretrain, shifted):
    pred = _nearest_centroid(_tile_features(pretrain), pretrain['labels'], _tile_features(shifted))
    assert (pred == shifted['labels']).mean() > 0.6     # chance is 0.1 (measured 0.85)


def test_background_alone_predicts_the_label_with_p_match(pretrain, in_dist, shifted):
    bg = _background_features(pretrain)
    for arrays in (in_dist, shifted):
        pred = _nearest_centroid(bg, pretrain['background_labels'], _background_features(arrays))
        assert (pred == arrays['background_labels']).mean() > 0.95   # the background is readable
    pred = _nearest_centroid(bg, pretrain['background_labels'], _background_features(in_dist))
    assert abs((pred == in_dist['labels']).mean() - 0.9) < 0.05       # a shortcut worth ~p_match
    pred = _nearest_centroid(bg, pretrain['background_labels'], _background_features(shifted))
    assert (pred == shifted['labels']).mean() < 0.05                  # and useless when shifted


def test_more_than_ten_classes_and_bad_arguments():
    names = class_names(12)
    assert names[0] == 'class_00' and list(names) == sorted(names)
    assert class_names(10)[-1] == 'class_9'
    a = generate_split(1, 0.9, 0, 'test_shifted', num_classes=12)
    assert a['images'].shape == (12, 32, 32, 3) and (a['labels'] != a['background_labels']).all()
    with pytest.raises(ValueError, match='num_classes'):
        generate_split(1, 0.9, 0, 'masked', num_classes=1)
    with pytest.raises(ValueError, match='num_classes'):
        generate_split(1, 0.9, 0, 'masked', num_classes=21)
    with pytest.raises(ValueError, match='image_size'):
        generate_split(1, 0.9, 0, 'masked', image_size=30)
    with pytest.raises(ValueError, match='p_match'):
        generate_split(1, 1.5, 0, 'masked')
    with pytest.raises(ValueError, match='split'):
        generate_split(1, 0.9, 0, 'val')
    big = generate_split(1, 0.9, 0, 'masked', image_size=64)
    assert big['images'].shape[1:] == (64, 64, 3) and (big['tiles'][:, :2] % 4 == 0).all()


# ------------------------------------------------------------------------------------ on disk
def test_write_benchmark_layout_and_encoding(bench):
    root, meta = bench
    names = ['class_0', 'class_1', 'class_2']
    assert meta['class_names'] == names and meta['params']['seed'] == 3
    assert meta['counts'] == dict(pretrain=9, masked=6, masked_val=3, test_in_dist=6, test_shifted=6)
    assert json.load(open(root / 'meta.json')) == meta
    for img_dir, mask_dir, per_class in [('pretrain', None, 3), ('masked/images', 'masked/masks', 2),
                                         ('masked_val/images', 'masked_val/masks', 1),
                                         ('test_in_dist', 'test_in_dist_masks', 2),
                                         ('test_shifted', 'test_shifted_masks', 2)]:
        assert sorted(os.listdir(root / img_dir)) == names
        for name in names:
            files = sorted(os.listdir(root / img_dir / name))
            assert len(files) == per_class and all(f.endswith('.JPEG') for f in files)
            if mask_dir:
                assert sorted(os.listdir(root / mask_dir / name)) == \
                    [f.replace('.JPEG', '.png') for f in files]
    # masks decode (G * 256 + R) to exactly the generated tile; images are close to the generated ones
    arrays = generate_split(2, 0.9, 3, 'masked', num_classes=3)
    for i in range(6):
        stem = f'{names[arrays["labels"][i]]}/{i:05d}'
        png = cv2.imread(str(root / 'masked/masks' / f'{stem}.png'), cv2.IMREAD_UNCHANGED)
        assert png.shape == (32, 32, 3) and png.dtype == np.uint8
        ids = png[..., 1].astype(int) * 256 + png[..., 2]          # cv2 gives BGR
        np.testing.assert_array_equal(ids, arrays['masks'][i])
        assert png[..., 0].max() == 0
        jpg = cv2.imread(str(root / 'masked/images' / f'{stem}.JPEG'))[..., ::-1]
        assert np.abs(jpg.astype(int) - arrays['images'][i]).mean() < 3
    rows = list(csv.DictReader(open(root / 'samples.csv')))
    assert len(rows) == sum(meta['counts'].values())
    shifted_rows = [r for r in rows if r['split'] == 'test_shifted']
    assert all(r['label'] != r['background_label'] for r in shifted_rows)
    assert all(osp.isfile(root / r['image']) for r in rows)


def test_write_benchmark_skips_and_regenerates(tmp_path, monkeypatch):
    root = tmp_path / 'b'
    write_benchmark(root, num_classes=2, **SMALL)
    meta_file, img = root / 'meta.json', root / 'pretrain/class_0/00000.JPEG'
    stamps = (meta_file.stat().st_mtime_ns, img.stat().st_mtime_ns)
    assert write_benchmark(root, num_classes=2, **SMALL)['params']['num_classes'] == 2
    assert (meta_file.stat().st_mtime_ns, img.stat().st_mtime_ns) == stamps     # no-op
    meta = write_benchmark(root, num_classes=2, **dict(SMALL, test_per_class=4))  # regenerates
    assert meta['counts']['test_shifted'] == 8
    assert len(os.listdir(root / 'test_shifted/class_1')) == 4
    assert sorted(os.listdir(tmp_path)) == ['b']                              # no temp dirs left

    # an interrupted run leaves the previous benchmark untouched and no temp dir
    def boom(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(synthetic.write, '_write_split', boom)
    with pytest.raises(KeyboardInterrupt):
        write_benchmark(root, seed=9, num_classes=2, **SMALL)
    with pytest.raises(KeyboardInterrupt):
        write_benchmark(tmp_path / 'c', num_classes=2, **SMALL)
    assert sorted(os.listdir(tmp_path)) == ['b']
    assert json.load(open(meta_file))['counts']['test_shifted'] == 8


def test_write_benchmark_refuses_foreign_folder(tmp_path):
    (tmp_path / 'x').mkdir()
    (tmp_path / 'x' / 'precious.txt').write_text('keep me')
    with pytest.raises(FileExistsError, match='precious|not a synthetic'):
        write_benchmark(tmp_path / 'x', num_classes=2, **SMALL)
    assert (tmp_path / 'x' / 'precious.txt').read_text() == 'keep me'


def test_imagefolder_and_imagenet_s_datasets_read_it(bench):
    root, _ = bench
    from mmpretrain.registry import DATASETS
    ds = DATASETS.build(dict(type='CustomDataset', data_root=str(root), data_prefix='test_shifted',
                             pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')]))
    assert len(ds) == 6 and ds.CLASSES == ('class_0', 'class_1', 'class_2')
    assert [ds.get_data_info(i)['gt_label'] for i in range(6)] == [0, 0, 1, 1, 2, 2]
    assert tuple(ds[0]['inputs'].shape) == (3, 32, 32)


def test_cli(tmp_path):
    """tools/make_synthetic.py as a user runs it (a subprocess; tests never import tools/)."""
    import subprocess
    import sys
    tool = osp.join(REPO, 'tools', 'make_synthetic.py')
    proc = subprocess.run(
        [sys.executable, tool, str(tmp_path / 'cli'), '--seed', '1', '--num-classes', '2',
         '--pretrain-per-class', '2', '--masked-per-class', '1', '--masked-val-per-class', '1',
         '--test-per-class', '1'], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert str(tmp_path / 'cli') in out and 'pretrain' in out and 'test_shifted' in out
    assert 'Warning' not in proc.stderr, proc.stderr[-2000:]   # quiet entry point
    assert json.load(open(tmp_path / 'cli' / 'meta.json'))['counts']['pretrain'] == 4


# ------------------------------------------------------------------------------------ in memory
def test_in_memory_dataset_items():
    from mmpretrain.registry import DATASETS
    ds = DATASETS.build(dict(type='SyntheticSpuriousDataset', split='masked', num_per_class=2,
                             seed=4))
    assert len(ds) == 20 and ds.CLASSES == class_names(10)
    arrays = generate_split(2, 0.9, 4, 'masked')
    for i in (0, 19):
        item = ds.get_data_info(i)
        assert {'img', 'img_shape', 'ori_shape', 'gt_label', 'background_label', 'fg_mask',
                'ignore_mask'} <= set(item)
        assert item['img'].dtype == np.uint8 and item['img'].shape == (32, 32, 3)
        np.testing.assert_array_equal(item['img'], arrays['images'][i][..., ::-1])   # BGR
        assert item['img_shape'] == item['ori_shape'] == (32, 32)
        assert item['gt_label'] == arrays['labels'][i]
        assert item['background_label'] == arrays['background_labels'][i]
        assert item['fg_mask'].dtype == np.float32 and item['fg_mask'].shape == (32, 32)
        np.testing.assert_array_equal(item['fg_mask'], arrays['masks'][i])
        assert item['ignore_mask'].dtype == np.float32 and not item['ignore_mask'].any()
    plain = SyntheticSpuriousDataset(split='test_shifted', num_per_class=1, with_mask=False)
    assert 'fg_mask' not in plain[0] and 'ignore_mask' not in plain[0]
    assert plain.split == 'test_shifted' and len(plain) == 10
    assert len(SyntheticSpuriousDataset(split='masked_val')) == 50     # default size of the split


def test_in_memory_dataset_through_pack_inputs():
    ds = SyntheticSpuriousDataset(
        split='train', num_per_class=1,
        pipeline=[dict(type='PackInputs', algorithm_keys=['fg_mask', 'ignore_mask'])])
    out = ds[3]
    assert tuple(out['inputs'].shape) == (3, 32, 32)
    sample = out['data_samples']
    assert int(sample.gt_label) == 3 and sample.fg_mask.shape == (32, 32)


# ------------------------------------------------------------------------------------ config
def test_base_config_parses(repo_root):
    from mmengine import Config
    cfg = Config.fromfile(osp.join(repo_root, 'configs/_base_/datasets/synthetic_spurious.py'))
    assert cfg.data_root == 'work_dirs/demo/data/seed0'
    assert cfg.data_preprocessor == dict(num_classes=10, mean=[127.5] * 3, std=[127.5] * 3,
                                         to_rgb=True)
    loaders = ['pretrain_dataloader', 'finetune_dataloader', 'finetune_val_dataloader',
               'in_dist_test_dataloader', 'shifted_test_dataloader', 'shifted_mask_test_dataloader']
    for name in loaders:
        loader = cfg[name]
        assert (loader.num_workers, loader.persistent_workers, loader.pin_memory) == (0, False, False)
        assert loader.dataset.data_root == cfg.data_root
    assert cfg.pretrain_dataloader.dataset.type == 'CustomDataset'
    ft = cfg.finetune_dataloader.dataset
    assert ft.type == 'ImageNetSMaskDataset' and ft.split == 'all' and ft.labels == 'sorted_folders'
    assert ft.data_prefix == dict(img_path='masked/images', mask_path='masked/masks')
    assert [t['type'] for t in ft.pipeline] == ['LoadCheckedImage', 'LoadForegroundMask',
                                                'PackInputs']
    assert 'train_dataloader' not in cfg and 'val_evaluator' not in cfg   # inheriting configs choose
    assert cfg.custom_imports == dict(imports=['robustvit_mm'], allow_failed_imports=False)
    set_data_root(cfg, '/data/seed1')
    assert cfg.data_root == '/data/seed1'
    assert all(cfg[name].dataset.data_root == '/data/seed1' for name in loaders)


def test_config_pipelines_read_the_written_benchmark(repo_root, bench, tmp_path):
    """A child config inherits the base with the method runtime (no duplicate keys), picks named
    dataloaders, and the mask pipeline (LoadForegroundMask) yields the exact tile masks."""
    from mmengine import Config
    from mmpretrain.registry import DATASETS
    root, _ = bench
    bases = [osp.join(repo_root, 'configs/_base_/datasets/synthetic_spurious.py')]
    runtime = osp.join(repo_root, 'configs/_base_/robustvit_runtime.py')
    if osp.isfile(runtime):
        bases.append(runtime)
    child = tmp_path / 'child.py'
    child.write_text(f'_base_ = {bases!r}\n'
                     'train_dataloader = _base_.finetune_dataloader\n'
                     'val_dataloader = _base_.finetune_val_dataloader\n'
                     'test_dataloader = _base_.shifted_mask_test_dataloader\n')
    cfg = set_data_root(Config.fromfile(str(child)), str(root))
    assert cfg.train_dataloader.dataset.data_prefix.mask_path == 'masked/masks'
    ds = DATASETS.build(cfg.train_dataloader.dataset)
    arrays = generate_split(2, 0.9, 3, 'masked', num_classes=3)
    assert len(ds) == 6 and ds.CLASSES == ('class_0', 'class_1', 'class_2')
    for i in range(6):
        out = ds[i]
        sample = out['data_samples']
        assert int(sample.gt_label) == arrays['labels'][i]
        np.testing.assert_array_equal(np.asarray(sample.fg_mask), arrays['masks'][i])
        assert not np.asarray(sample.ignore_mask).any()
    shifted = DATASETS.build(cfg.test_dataloader.dataset)
    assert len(shifted) == 6 and int(shifted[5]['data_samples'].gt_label) == 2


def test_random_share_mixes_random_backgrounds_into_one_split():
    base = generate_split(60, 0.9, 4, 'pretrain', num_classes=10, image_size=24)
    same = generate_split(60, 0.9, 4, 'pretrain', num_classes=10, image_size=24, random_share=0.0)
    for key in base:
        np.testing.assert_array_equal(base[key], same[key])   # share 0 = the split as before
    mixed = generate_split(60, 0.9, 4, 'pretrain', num_classes=10, image_size=24, random_share=0.5)
    matched = float((mixed['labels'] == mixed['background_labels']).mean())
    # half at p_match 0.9, half uniform over all 10 classes: 0.5 * 0.9 + 0.5 * 0.1 = 0.5
    assert abs(matched - 0.5) < 0.06, matched
    assert abs(float((base['labels'] == base['background_labels']).mean()) - 0.9) < 0.04


def test_write_benchmark_random_share_only_touches_pretraining(tmp_path):
    sizes = dict(seed=3, image_size=24, pretrain_per_class=20, masked_per_class=2,
                 masked_val_per_class=2, test_per_class=4)
    plain = synthetic.write_benchmark(tmp_path / 'plain', **sizes)
    mixed = synthetic.write_benchmark(tmp_path / 'mixed', pretrain_random_share=1.0, **sizes)
    assert mixed['params']['pretrain_random_share'] == 1.0
    assert mixed['matched_background']['pretrain'] < plain['matched_background']['pretrain']
    for split in ('masked', 'masked_val', 'test_in_dist', 'test_shifted'):
        assert mixed['matched_background'][split] == plain['matched_background'][split]
    with pytest.raises(ValueError, match='pretrain_random_share'):
        synthetic.write_benchmark(tmp_path / 'bad', pretrain_random_share=1.5, **sizes)
