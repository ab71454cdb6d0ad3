"""ImageNet-S masks on disk: decoding (LoadForegroundMask), the sorted seeded class split
(ImageNetSMaskDataset), SaveClassSplitHook and the base dataset config."""
import json
import os
import os.path as osp
import re
import shutil
import types

import cv2
import numpy as np
import pytest
from mini_imagenet_s import IGNORE_ID, make_imagenet_s_tree, write_mask_png
from mmengine import Config
from mmengine.dataset import ConcatDataset, RepeatDataset
from mmengine.logging import MMLogger
from mmengine.runner import BaseLoop
from PIL import Image
from torch.utils.data import DataLoader

import robustvit_mm  # noqa: F401  (registers)
from mmpretrain.registry import DATASETS, HOOKS, TRANSFORMS
from robustvit_mm.datasets.imagenet_classes import imagenet_index, imagenet_wnids
from robustvit_mm.datasets.imagenet_s import MERGED_TAGS, ImageNetSMaskDataset
from robustvit_mm.datasets import decode_imagenet_s_mask
from stock_run_helpers import REPO



def _load(path, img=None, **kw):
    results = dict(mask_path=str(path))
    if img is not None:
        results.update(img=img, img_path='the_image.JPEG')
    return TRANSFORMS.build(dict(type='LoadForegroundMask', **kw))(results)


def _ds(tree, **kw):
    return ImageNetSMaskDataset(data_root=tree['data_root'], data_prefix=tree['data_prefix'], **kw)


# ------------------------------------------------------------------------------------- decoding
def test_decoding_uses_green_times_256_in_int32(tmp_path):
    """id 300 = (R 44, G 1) and 919 = (R 151, G 3): uint8 * 256 would overflow under NumPy 2."""
    ids = np.zeros((6, 7), np.int64)
    ids[1:3, 2:5] = 300
    write_mask_png(tmp_path / 'a.png', ids)
    out = _load(tmp_path / 'a.png')
    np.testing.assert_array_equal(out['fg_mask'], (ids == 300).astype(np.float32))
    assert out['fg_mask'].dtype == out['ignore_mask'].dtype == np.float32
    assert out['fg_mask'].shape == (6, 7) and out['ignore_mask'].sum() == 0

    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[..., 1], bgr[..., 2] = 3, 151  # cv2 order: G in 1, R in 2
    assert (decode_imagenet_s_mask(bgr) == 919).all()
    with pytest.raises(OverflowError):  # what the authors' uint8 expression does on NumPy 2
        bgr[..., 1] * 256


def test_ignore_pixels_are_background_by_default_and_reported(tmp_path):
    ids = np.zeros((8, 8), np.int64)
    ids[1:7, 1:7] = IGNORE_ID
    ids[2:6, 2:6] = 919
    write_mask_png(tmp_path / 'm.png', ids)
    out = _load(tmp_path / 'm.png')
    np.testing.assert_array_equal(out['fg_mask'], (ids == 919).astype(np.float32))
    np.testing.assert_array_equal(out['ignore_mask'], (ids == IGNORE_ID).astype(np.float32))
    out = _load(tmp_path / 'm.png', ignore_pixels='foreground')
    np.testing.assert_array_equal(out['fg_mask'], (ids != 0).astype(np.float32))
    with pytest.raises(ValueError, match='ignore_pixels'):
        _load(tmp_path / 'm.png', ignore_pixels='drop')


def test_grayscale_masks_decode(tmp_path):
    ids = np.zeros((5, 6), np.uint16)
    ids[1:4, 1:3] = 919
    ids[0, :] = IGNORE_ID
    cv2.imwrite(str(tmp_path / 'g16.png'), ids)  # 16-bit grayscale: value = id
    out = _load(tmp_path / 'g16.png')
    np.testing.assert_array_equal(out['fg_mask'], (ids == 919).astype(np.float32))
    np.testing.assert_array_equal(out['ignore_mask'], (ids == IGNORE_ID).astype(np.float32))
    binary = np.zeros((5, 6), np.uint8)
    binary[2:, 3:] = 255
    Image.fromarray(binary, mode='L').save(tmp_path / 'bin.png')
    np.testing.assert_array_equal(_load(tmp_path / 'bin.png')['fg_mask'], binary / 255)


def test_two_categories_corrupt_file_and_size_mismatch_are_errors(tmp_path):
    ids = np.zeros((6, 6), np.int64)
    ids[0, 0], ids[5, 5] = 300, 919
    write_mask_png(tmp_path / 'two.png', ids)
    with pytest.raises(ValueError, match=r'two\.png.*\[300, 919\]'):
        _load(tmp_path / 'two.png')

    (tmp_path / 'bad.png').write_bytes(b'\x89PNG not really')
    with pytest.raises(ValueError, match=r'bad\.png'):
        _load(tmp_path / 'bad.png')
    with pytest.raises(FileNotFoundError, match=r'nothere\.png'):
        _load(tmp_path / 'nothere.png')

    ok = np.zeros((6, 6), np.int64)
    ok[2:4, 2:4] = 300
    write_mask_png(tmp_path / 'ok.png', ok)
    with pytest.raises(ValueError, match=r'ok\.png.*6x6.*the_image\.JPEG.*6x7'):
        _load(tmp_path / 'ok.png', img=np.zeros((6, 7, 3), np.uint8))
    assert _load(tmp_path / 'ok.png', img=np.zeros((6, 6, 3), np.uint8))['fg_mask'].sum() == 4


def test_a_mask_without_an_object_is_an_error_naming_the_file(tmp_path):
    # A 16-bit mask whose object value is 1000 (the ignore id): all ignore, no object.
    ids = np.zeros((8, 9), np.uint16)
    ids[2:6, 3:7] = IGNORE_ID
    cv2.imwrite(str(tmp_path / 'obj1000.png'), ids)
    write_mask_png(tmp_path / 'zeros.png', np.zeros((8, 9), np.int64))
    for name in ('obj1000.png', 'zeros.png'):
        for ignore_pixels in ('background', 'foreground'):
            with pytest.raises(ValueError, match=rf"{name}' has no object pixel.*empty_masks='skip'"):
                _load(tmp_path / name, ignore_pixels=ignore_pixels)


def _inverted_masks(tmp_path):
    """A centred object (12 x 14 of 32 x 30) written inverted, as a 0/255 mask and as a palette PNG
    whose index 0 is white; and the same object the right way round."""
    obj = np.zeros((32, 30), bool)
    obj[10:22, 8:22] = True
    Image.fromarray(np.where(obj, 0, 255).astype(np.uint8), mode='L').save(tmp_path / 'inv.png')
    palette = Image.fromarray(obj.astype(np.uint8), mode='P')      # index 1 = the object
    palette.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)       # index 0 white, 1 black
    palette.save(tmp_path / 'palette.png')
    Image.fromarray(np.where(obj, 255, 0).astype(np.uint8), mode='L').save(tmp_path / 'right.png')
    return obj


def test_an_inverted_mask_is_refused_unless_allowed(tmp_path):
    obj = _inverted_masks(tmp_path)
    for name in ('inv.png', 'palette.png'):
        with pytest.raises(ValueError, match=rf"{name}' looks inverted: .* covers 82% .*"
                                             r'allow_inverted=True'):
            _load(tmp_path / name)
        out = _load(tmp_path / name, allow_inverted=True)             # data where that is real
        np.testing.assert_array_equal(out['fg_mask'], (~obj).astype(np.float32))
    np.testing.assert_array_equal(_load(tmp_path / 'right.png')['fg_mask'], obj.astype(np.float32))
    # A large object that leaves one border free is not taken for an inverted mask.
    big = np.full((32, 30), 255, np.uint8)
    big[-1] = 0
    Image.fromarray(big, mode='L').save(tmp_path / 'big.png')
    assert _load(tmp_path / 'big.png')['fg_mask'].mean() > 0.95


def _logged(build):
    """(result of build(), the messages mmengine's current logger got meanwhile)."""
    import logging
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger, keep = MMLogger.get_current_instance(), Keep()
    logger.addHandler(keep)
    try:
        return build(), records
    finally:
        logger.removeHandler(keep)


def _mask_paths(ds):
    return [ds.get_data_info(i)['mask_path'] for i in range(len(ds))]


def test_dataset_skips_masks_without_object_by_option_and_reports_what_it_used(tmp_path):
    tree = make_imagenet_s_tree(tmp_path, num_classes=3, per_class=3)
    empty = osp.join(tree['mask_root'], tree['wnids'][0], tree['wnids'][0] + '_1000.png')
    write_mask_png(empty, np.full(tree['size'], IGNORE_ID))
    ds, log = _logged(lambda: _ds(tree, split='train', num_classes=3, num_samples=5,
                                  empty_masks='skip', pipeline=[dict(type='LoadForegroundMask')]))
    assert empty not in _mask_paths(ds) and ds.skipped_masks == [empty] and len(ds) == 8
    assert ds.masks_per_class == dict(min=2, max=3)            # 5 asked, 3 held, one empty
    assert all(ds[i]['fg_mask'].sum() > 0 for i in range(len(ds)))
    assert any('3 classes, 8 masks; masks per class: min 2, max 3 (num_samples=5); 1 masks without '
               'an object skipped' in line for line in log), log
    ds = _ds(tree, split='train', num_classes=3, num_samples=2, empty_masks='skip')
    assert ds.masks_per_class == dict(min=2, max=2) and len(ds) == 6   # the next mask stands in
    default, log = _logged(lambda: _ds(tree, split='train', num_classes=3, num_samples=2,
                                       pipeline=[dict(type='LoadForegroundMask')]))
    assert any('masks per class: min 2, max 2 (num_samples=2)' in line for line in log), log
    with pytest.raises(ValueError, match=r"_1000\.png' has no object pixel"):   # default: an error
        default[_mask_paths(default).index(empty)]
    with pytest.raises(ValueError, match=r"empty_masks='drop'.*\('error', 'skip'\)"):
        _ds(tree, split='train', num_classes=3, empty_masks='drop')


def test_mini_tree_masks_cover_the_bright_object(tmp_path):
    tree = make_imagenet_s_tree(tmp_path, num_classes=3, per_class=2)
    for mask_path, (y0, x0, y1, x1) in tree['boxes'].items():
        out = _load(mask_path)
        assert out['fg_mask'].sum() == (y1 - y0) * (x1 - x0)
        assert out['fg_mask'][y0:y1, x0:x1].all()
        assert out['ignore_mask'].sum() == 2 * (y1 - y0 + x1 - x0) + 4  # the 1-pixel ring
        img_path = mask_path.replace('train-semi-segmentation', 'train').replace('.png', '.JPEG')
        img = np.asarray(Image.open(img_path))
        assert img[out['fg_mask'] > 0].min() > 150 and img[out['fg_mask'] == 0].mean() < 60


# -------------------------------------------------------------------------------------- dataset
def test_items_labels_and_metainfo(tmp_path):
    tree = make_imagenet_s_tree(tmp_path, num_classes=6, per_class=4)
    ds = _ds(tree, split='train', num_classes=4, num_samples=3)
    assert len(ds) == 12
    split = ds.split_wnids
    assert len(split['train']) == 4 and len(split['val']) == 2
    assert set(split['train']) | set(split['val']) == set(tree['wnids'])
    seen = {}
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        wnid = osp.basename(osp.dirname(info['mask_path']))
        assert wnid in split['train']
        assert info['gt_label'] == imagenet_index(wnid) and isinstance(info['gt_label'], int)
        assert osp.isfile(info['img_path']) and info['img_path'].endswith('.JPEG')
        assert osp.splitext(osp.basename(info['img_path']))[0] == \
            osp.splitext(osp.basename(info['mask_path']))[0]
        seen.setdefault(wnid, []).append(osp.basename(info['mask_path']))
    for wnid, names in seen.items():  # the first 3 files in sorted order
        assert names == [f'{wnid}_{1000 + j}.png' for j in range(3)]
    assert ds.metainfo['classes'] == tuple(imagenet_wnids())
    assert ds.get_cat_ids(0) == [ds.get_data_info(0)['gt_label']]


def test_val_is_the_held_out_classes_with_one_file_each(tmp_path):
    tree = make_imagenet_s_tree(tmp_path, num_classes=6, per_class=3)
    train = _ds(tree, split='train', num_classes=4, num_samples=2)
    val = _ds(tree, split='val', num_classes=4, num_samples=2)
    assert train.split_wnids == val.split_wnids
    assert len(val) == 2
    val_wnids = [osp.basename(osp.dirname(val.get_data_info(i)['mask_path'])) for i in range(2)]
    assert val_wnids == val.split_wnids['val']
    assert [osp.basename(val.get_data_info(i)['mask_path']) for i in range(2)] == \
        [f'{w}_1000.png' for w in val_wnids]
    assert not set(val_wnids) & set(train.split_wnids['train'])
    everything = _ds(tree, split='all')
    assert len(everything) == 18 and everything.split_wnids == dict(all=sorted(tree['wnids']))


def test_split_is_sorted_and_independent_of_creation_order(tmp_path):
    wnids = [w for w in imagenet_wnids()[:40:3]]
    a = make_imagenet_s_tree(tmp_path / 'a', wnids=wnids, per_class=3, size=(12, 12))
    b = make_imagenet_s_tree(tmp_path / 'b', wnids=wnids[::-1], per_class=3, size=(12, 12))
    # also create the files of one class in another order in b
    folder = osp.join(b['mask_root'], wnids[0])
    names = sorted(os.listdir(folder))
    for n in names:
        os.rename(osp.join(folder, n), osp.join(folder, 'tmp_' + n))
    for n in reversed(names):
        os.rename(osp.join(folder, 'tmp_' + n), osp.join(folder, n))

    def rel(ds):
        return [(osp.relpath(ds.get_data_info(i)['mask_path'], ds.mask_root),
                 ds.get_data_info(i)['gt_label']) for i in range(len(ds))]

    for split in ('train', 'val'):
        da = _ds(a, split=split, num_classes=7, num_samples=2, split_seed=0)
        db = _ds(b, split=split, num_classes=7, num_samples=2, split_seed=0)
        assert da.split_wnids == db.split_wnids
        assert rel(da) == rel(db)
    # seed 0 is a real seed: the split is not the sorted order's first 7 classes
    assert da.split_wnids['train'] != sorted(wnids)[:7]
    # the recipe: sorted list, shuffled by random.Random(seed)
    import random
    expected = sorted(wnids)
    random.Random(0).shuffle(expected)
    assert da.split_wnids == dict(train=expected[:7], val=expected[7:])
    other = _ds(a, split='train', num_classes=7, num_samples=2, split_seed=1)
    assert set(other.split_wnids['train']) != set(da.split_wnids['train'])


def test_paper_literal_sorted_order_and_no_system_random_seed(tmp_path):
    tree = make_imagenet_s_tree(tmp_path, num_classes=6, per_class=2, size=(10, 10))
    ordered = sorted(tree['wnids'])
    train = _ds(tree, split='train', num_classes=4, num_samples=1, class_order='sorted')
    val = _ds(tree, split='val', num_classes=4, class_order='sorted', split_seed=None)
    assert train.split_wnids == val.split_wnids == dict(train=ordered[:4], val=ordered[4:])
    assert [osp.basename(osp.dirname(d['mask_path'])) for d in val] == ordered[4:]
    for seed in (None, '0', 1.5, True):
        with pytest.raises(ValueError, match=re.escape(f'split_seed={seed!r}') + '.*int seed.*'
                           "system randomness.*class_order='sorted'"):
            _ds(tree, split='train', num_classes=4, split_seed=seed)
    with pytest.raises(ValueError, match="class_order='first'"):
        _ds(tree, split='train', num_classes=4, class_order='first')


def test_split_file_saved_by_a_run_defines_the_split(tmp_path):
    tree = make_imagenet_s_tree(tmp_path / 'data', num_classes=6, per_class=2, size=(10, 10))
    train = _ds(tree, split='train', num_classes=4, num_samples=1, split_seed=7)
    work = tmp_path / 'work'
    work.mkdir()
    HOOKS.build(dict(type='SaveClassSplitHook')).before_train(_runner(work, train=train))
    saved = str(work / 'imagenet_s_split.json')
    for split in ('train', 'val'):  # another seed is not used: the file decides
        again = _ds(tree, split=split, num_classes=4, num_samples=1, split_seed=None,
                    split_file=saved)
        assert again.split_wnids == train.split_wnids
    assert [d['mask_path'] for d in _ds(tree, split='train', num_classes=4, num_samples=1,
                                        split_file=saved)] == [d['mask_path'] for d in train]
    with pytest.raises(ValueError, match='num_classes=3 but split_file .* has 4 training classes'):
        _ds(tree, split='train', num_classes=3, split_file=saved)
    record = json.loads(open(saved).read())
    bad = tmp_path / 'bad.json'
    bad.write_text(json.dumps(dict(train=record['train'] + ['n09999999'], val=record['val'])))
    with pytest.raises(ValueError, match=r"names 1 class\(es\) that are not class folders.*n09999999"):
        _ds(tree, split='train', num_classes=5, split_file=str(bad))
    bad.write_text(json.dumps(dict(train=record['train'], val=record['train'][:1])))
    with pytest.raises(ValueError, match='in both train and val'):
        _ds(tree, split='val', num_classes=4, split_file=str(bad))
    bad.write_text('{"classes": []}')
    with pytest.raises(ValueError, match='not a class split with "train" and "val"'):
        _ds(tree, split='val', num_classes=4, split_file=str(bad))
    with pytest.raises(FileNotFoundError, match='nothere.json'):
        _ds(tree, split='val', num_classes=4, split_file=str(tmp_path / 'nothere.json'))


def test_merged_wnids_strays_and_other_files_are_skipped(tmp_path):
    keep = list(imagenet_wnids()[:4])
    merged = ['n04356056', 'n02808440']  # sunglasses, bathtub: both in MERGED_TAGS
    assert set(merged) <= MERGED_TAGS
    tree = make_imagenet_s_tree(tmp_path, wnids=keep + merged, per_class=2, size=(10, 10))
    open(osp.join(tree['mask_root'], 'README.txt'), 'w').close()  # stray top-level file
    os.makedirs(osp.join(tree['mask_root'], '.cache'))  # hidden folder
    open(osp.join(tree['mask_root'], keep[0], 'notes.txt'), 'w').close()  # non-mask file
    ds = _ds(tree, split='all')
    assert ds.split_wnids['all'] == sorted(keep)
    assert len(ds) == 8
    assert not any(w in ds.get_data_info(i)['mask_path'] for w in merged for i in range(len(ds)))


def test_image_extensions_and_missing_or_ambiguous_images(tmp_path):
    tree = make_imagenet_s_tree(tmp_path, num_classes=2, per_class=2, size=(10, 10))
    w = tree['wnids'][0]
    jpeg = osp.join(tree['img_root'], w, f'{w}_1000.JPEG')
    os.rename(jpeg, jpeg[:-5] + '.png')  # a PNG image is accepted
    ds = _ds(tree, split='all')
    assert any(ds.get_data_info(i)['img_path'].endswith(f'{w}_1000.png') for i in range(len(ds)))
    shutil.copy(jpeg[:-5] + '.png', jpeg[:-5] + '.jpg')  # now two images with that stem
    with pytest.raises(ValueError, match=rf'{w}_1000\.png.*several images'):
        _ds(tree, split='all')
    os.remove(jpeg[:-5] + '.png')
    os.remove(jpeg[:-5] + '.jpg')
    with pytest.raises(FileNotFoundError) as err:
        _ds(tree, split='all')
    assert f'{w}_1000.png' in str(err.value) and jpeg in str(err.value)


def test_empty_class_folder_missing_root_and_bad_options_are_errors(tmp_path):
    tree = make_imagenet_s_tree(tmp_path, num_classes=3, per_class=2, size=(10, 10))
    empty = osp.join(tree['mask_root'], 'n09999999')
    os.makedirs(empty)
    with pytest.raises(FileNotFoundError, match=empty):
        _ds(tree, split='train', num_classes=1)
    os.rmdir(empty)

    with pytest.raises(FileNotFoundError, match='nowhere'):
        ImageNetSMaskDataset(data_root=str(tmp_path / 'nowhere'), data_prefix=tree['data_prefix'])
    with pytest.raises(ValueError, match='num_classes=5.*3 class folders'):
        _ds(tree, split='train', num_classes=5)
    with pytest.raises(ValueError, match='val'):
        _ds(tree, split='val', num_classes=3)
    with pytest.raises(ValueError, match='split'):
        _ds(tree, split='test')
    with pytest.raises(ValueError, match='labels'):
        _ds(tree, labels='wnid')


def test_labels_sorted_folders_and_non_wnid_folders(tmp_path):
    tree = make_imagenet_s_tree(tmp_path, wnids=['zebra_on_grass', 'cow_on_beach', 'cat'],
                                per_class=2, size=(10, 10))
    with pytest.raises(ValueError, match=r"\['cat', 'cow_on_beach', 'zebra_on_grass'\]"):
        _ds(tree, split='all')
    ds = _ds(tree, split='all', labels='sorted_folders')
    assert ds.metainfo['classes'] == ('cat', 'cow_on_beach', 'zebra_on_grass')
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        assert ds.metainfo['classes'][info['gt_label']] in info['mask_path']


def test_lazy_init_and_basedataset_kwargs(tmp_path):
    tree = make_imagenet_s_tree(tmp_path, num_classes=4, per_class=3, size=(10, 10))
    ds = _ds(tree, split='train', num_classes=2, num_samples=3, lazy_init=True)
    assert not ds._fully_initialized and ds.metainfo['classes'] == tuple(imagenet_wnids())
    ds.full_init()
    assert len(ds) == 6
    ds = _ds(tree, split='train', num_classes=2, num_samples=3, indices=4, serialize_data=False)
    assert len(ds) == 4
    built = DATASETS.build(dict(type='ImageNetSMaskDataset', data_root=tree['data_root'],
                                data_prefix=tree['data_prefix'], split='val', num_classes=2,
                                test_mode=True))
    assert len(built) == 2 and isinstance(built, ImageNetSMaskDataset)


def test_full_pipeline_on_disk(tmp_path):
    tree = make_imagenet_s_tree(tmp_path, num_classes=3, per_class=2)
    ds = _ds(tree, split='all', pipeline=[
        dict(type='LoadImageFromFile'), dict(type='LoadForegroundMask'),
        dict(type='WithMask', transforms=[dict(type='CenterCrop', crop_size=(48, 40))]),
        dict(type='PackInputs', algorithm_keys=['fg_mask', 'ignore_mask'])])
    for i in range(len(ds)):
        sample = ds[i]
        fg = sample['data_samples'].fg_mask
        y0, x0, y1, x1 = tree['boxes'][ds.get_data_info(i)['mask_path']]
        assert fg.shape == (40, 48) and fg.sum() == (y1 - y0) * (x1 - x0)
        inputs = sample['inputs'].numpy()
        assert inputs[:, fg > 0].min() > 150 and inputs[:, fg == 0].mean() < 60


# ----------------------------------------------------------------------------------------- hook
class _Loop(BaseLoop):
    def run(self):
        pass


def _runner(tmp_path, **loops):
    runner = types.SimpleNamespace(work_dir=str(tmp_path), logger=MMLogger.get_current_instance())
    for name in ('train', 'val', 'test'):
        setattr(runner, f'_{name}_loop', None)
    for name, dataset in loops.items():
        loader = DataLoader(dataset, batch_size=1, collate_fn=lambda x: x)
        setattr(runner, f'_{name}_loop', _Loop(runner, loader))
    return runner


def test_save_class_split_hook(tmp_path):
    tree = make_imagenet_s_tree(tmp_path / 'data', num_classes=5, per_class=2, size=(10, 10))
    train = _ds(tree, split='train', num_classes=3, num_samples=2, split_seed=4)
    val = _ds(tree, split='val', num_classes=3, num_samples=2, split_seed=4)
    work = tmp_path / 'work'
    work.mkdir()
    hook = HOOKS.build(dict(type='SaveClassSplitHook'))
    runner = _runner(work, train=RepeatDataset(train, times=2), val=ConcatDataset([val]))
    hook.before_train(runner)
    record = json.loads((work / 'imagenet_s_split.json').read_text())
    assert record['train'] == train.split_wnids['train'] and record['val'] == val.split_wnids['val']
    assert record['num_train_classes'] == 3 and record['num_val_classes'] == 2
    assert record['split_seed'] == 4 and record['num_samples'] == 2
    assert record['datasets']['train_dataloader']['num_images'] == 6
    assert record['datasets']['train_dataloader']['masks_per_class'] == dict(min=2, max=2)
    assert record['datasets']['val_dataloader']['split'] == 'val'
    assert record['datasets']['val_dataloader']['num_images'] == 2

    # Another split on one side only (here the seed) is refused before anything is written, naming
    # both loaders' settings and the training classes validation would use.
    work4 = tmp_path / 'work4'
    work4.mkdir()
    other_val = _ds(tree, split='val', num_classes=3, num_samples=2, split_seed=5)
    shared = set(train.split_wnids['train']) & set(other_val.split_wnids['val'])
    assert shared  # 5 classes, 3 train: seeds 4 and 5 overlap
    with pytest.raises(ValueError, match=(
            r'train_dataloader and val_dataloader split the ImageNet-S classes differently: '
            r"train_dataloader\.dataset has num_classes=3, split_seed=4, class_order='shuffled'.*"
            r"val_dataloader\.dataset has num_classes=3, split_seed=5, class_order='shuffled'.*"
            rf'{len(shared)} of the validation classes are training classes')):
        HOOKS.build(dict(type='SaveClassSplitHook')).before_train(
            _runner(work4, train=train, val=other_val))
    assert not os.listdir(work4)
    fewer = _ds(tree, split='val', num_classes=2, num_samples=2, split_seed=4)
    with pytest.raises(ValueError, match='num_classes=3, split_seed=4.*num_classes=2, split_seed=4'):
        HOOKS.build(dict(type='SaveClassSplitHook')).before_train(
            _runner(work4, train=train, val=fewer))

    # test-only run: written before_test
    work2 = tmp_path / 'work2'
    work2.mkdir()
    HOOKS.build(dict(type='SaveClassSplitHook')).before_test(_runner(work2, test=val))
    assert json.loads((work2 / 'imagenet_s_split.json').read_text())['val'] == val.split_wnids['val']

    # other datasets: nothing written
    work3 = tmp_path / 'work3'
    work3.mkdir()
    HOOKS.build(dict(type='SaveClassSplitHook')).before_train(_runner(work3, train=list(range(4))))
    assert not os.listdir(work3)


# --------------------------------------------------------------------------------------- config
def test_base_config_parses_and_builds_on_the_mini_tree(tmp_path):
    cfg = Config.fromfile(osp.join(REPO, 'configs/_base_/datasets/imagenet_s_masks.py'))
    assert cfg.data_root == 'data/imagenet'
    assert cfg.data_preprocessor.mean == [127.5] * 3 and cfg.data_preprocessor.to_rgb
    assert cfg.train_dataloader.batch_size == 8 and cfg.val_dataloader.batch_size == 10
    assert cfg.train_dataloader.dataset.data_prefix.mask_path == 'ImageNetS919/train-semi-segmentation'
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        assert (loader.dataset.split_seed, loader.dataset.class_order) == (0, 'shuffled')
        assert loader.persistent_workers is False  # num_workers=0 must work with the stock tools
    runtime = Config.fromfile(osp.join(REPO, 'configs/_base_/robustvit_runtime.py'))
    assert runtime.default_hooks.class_split == dict(type='SaveClassSplitHook')

    tree = make_imagenet_s_tree(tmp_path, num_classes=4, per_class=3)
    for loader, n in (('train_dataloader', 6), ('val_dataloader', 2)):
        dcfg = cfg[loader].dataset.copy()
        dcfg.update(data_root=tree['data_root'], data_prefix=tree['data_prefix'], num_classes=2,
                    num_samples=3)
        ds = DATASETS.build(dcfg)
        assert len(ds) == n
        np.random.seed(0)
        sample = ds[0]
        assert tuple(sample['inputs'].shape) == (3, 224, 224)
        fg = sample['data_samples'].fg_mask
        assert fg.shape == (224, 224) and fg.dtype == np.float32
        assert sample['data_samples'].ignore_mask.shape == (224, 224)
        assert 0 < fg.sum() < 224 * 224 and fg.max() <= 1
        # the mask still sits on the bright object after the joint transforms
        bright = sample['inputs'].float().mean(0).numpy() > 150
        assert (fg[bright] > 0.5).mean() > 0.9


def test_train_and_val_in_two_label_spaces_are_refused_with_a_complete_fix(tmp_path):
    """labels='sorted_folders' on the training loader only: folder ranks would mean other ImageNet
    classes than validation's ImageNet-1k indices."""
    tree = make_imagenet_s_tree(tmp_path / 'data', num_classes=5, per_class=2, size=(10, 10))
    split = dict(num_classes=3, num_samples=2, split_seed=4)
    train = _ds(tree, split='train', labels='sorted_folders', **split)
    val = _ds(tree, split='val', **split)
    assert train.split_wnids == val.split_wnids      # one class split: only the labels differ
    work = tmp_path / 'work'
    work.mkdir()
    with pytest.raises(ValueError, match=(
            r"train_dataloader\.dataset has labels='sorted_folders' \(ranks among the sorted class "
            r"folders\); val_dataloader\.dataset has labels='imagenet1k' \(ImageNet-1k indices\).*"
            r'every loader \(train_dataloader\.dataset, val_dataloader\.dataset\).*'
            r'model\.head\.num_classes and data_preprocessor\.num_classes')):
        HOOKS.build(dict(type='SaveClassSplitHook')).before_train(
            _runner(work, train=train, val=val))
    assert not (work / 'imagenet_s_split.json').exists()
    same = _ds(tree, split='val', labels='sorted_folders', **split)
    HOOKS.build(dict(type='SaveClassSplitHook')).before_train(_runner(work, train=train, val=same))
    assert (work / 'imagenet_s_split.json').exists()
