"""Shifted-set datasets on miniature versions of every real layout.

The ``make_*`` builders below write those miniatures (real JPEG/PNG files, ObjectNet mapping files,
a MATLAB v7.3 ``gtsegs_ijcv.mat`` written with h5py); ``test_metrics.py`` and
``test_robustness_report.py`` import them.
"""
import json
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from robustvit_mm.datasets.imagenet_classes import imagenet_index, imagenet_wnids
from robustvit_mm.datasets.shifted import (CropBorder, ImageNetA, ImageNetR, ImageNetSegmentation,
                                           ImageNetSketch, ImageNetV2, ObjectNet, SIScore,
                                           imagenet_a_wnids, imagenet_r_wnids, si_score_labels)

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


def labels_of(ds):
    return [ds.get_data_info(i)['gt_label'] for i in range(len(ds))]


# ----------------------------------------------------------------------------------------------
def test_published_class_lists():
    a, r = imagenet_a_wnids(), imagenet_r_wnids()
    assert len(a) == len(set(a)) == 200 and len(r) == len(set(r)) == 200
    assert list(a) == sorted(a) and set(a) <= set(WNIDS) and set(r) <= set(WNIDS)
    # spot checks against the published index lists (ImageNet-A starts 6, 11, 13; -R 1, 2, 4)
    assert [imagenet_index(w) for w in a[:3]] == [6, 11, 13]
    assert [imagenet_index(w) for w in r[:3]] == [1, 2, 4]
    table = si_score_labels()
    assert len(table) == 112 and len(set(table.values())) == 112
    assert table['koala'] == 105 and table['ipod'] == 605 and table['hippopotamus'] == 344


def test_imagenet_a_layout_protocols_and_stray_file(tmp_path):
    root = make_folder_set(str(tmp_path / 'imagenet-a'), A_CLASSES)
    paper = ImageNetA(root)
    assert labels_of(paper) == [6, 6, 11, 11, 13, 13]  # README.txt at the top level skipped
    meta = paper.metainfo
    assert meta['protocol'] == 'paper' and meta['eval_class_subset'] is None
    assert meta['dataset_name'] == 'imagenet-a' and len(meta['classes']) == 1000
    std = ImageNetA(root, protocol='standard').metainfo['eval_class_subset']
    # the FIXED 200 classes, not the 3 folders on disk
    assert len(std) == 200 and std == sorted(imagenet_index(w) for w in imagenet_a_wnids())
    assert 'gt_label_set' not in paper.get_data_info(0)


def test_imagenet_r_and_sketch(tmp_path):
    r = ImageNetR(make_folder_set(str(tmp_path / 'imagenet-r'), R_CLASSES), protocol='standard')
    assert labels_of(r) == [1, 6, 6] and len(r.metainfo['eval_class_subset']) == 200
    sketch = ImageNetSketch(make_folder_set(str(tmp_path / 'sketch'), SKETCH_CLASSES, '.JPEG'),
                            protocol='standard')
    assert labels_of(sketch) == [0, 0, 6, 13]
    assert sketch.metainfo['eval_class_subset'] is None  # 1000-way in both protocols


def test_wrong_layouts_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match='nowhere'):
        ImageNetA(str(tmp_path / 'nowhere'))
    bad = make_folder_set(str(tmp_path / 'bad'), {'not_a_wnid': 1})
    with pytest.raises(ValueError, match=r'not_a_wnid.*not an ImageNet-1k wnid'):
        ImageNetSketch(bad)
    # tench is an ImageNet-1k class but not one of the 200 ImageNet-A classes
    with pytest.raises(ValueError, match=f'{WNIDS[0]}.*200 imagenet-a classes'):
        ImageNetA(make_folder_set(str(tmp_path / 'a2'), {WNIDS[0]: 1}))
    empty = tmp_path / 'empty'
    (empty / WNIDS[6]).mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match='found no images'):
        ImageNetA(str(empty))
    with pytest.raises(ValueError, match='protocol'):
        ImageNetA(str(empty), protocol='hendrycks')


def test_imagenet_v2_variants(tmp_path):
    make_v2(str(tmp_path))
    ds = ImageNetV2(str(tmp_path))
    assert labels_of(ds) == [0, 0, 3, 999]
    assert ds.metainfo['dataset_name'] == 'imagenet-v2'
    # data_root may be the variant folder itself
    assert len(ImageNetV2(str(tmp_path / 'imagenetv2-matched-frequency-format-val'))) == 4
    with pytest.raises(ValueError, match='matched-frequency.*threshold0.7'):
        ImageNetV2(str(tmp_path / 'imagenetv2-matched-frequency-format-val'),
                   variant='threshold0.7')
    make_v2(str(tmp_path), {'5': 1}, variant='top-images')
    top = ImageNetV2(str(tmp_path), variant='top-images')
    assert labels_of(top) == [5] and top.metainfo['dataset_name'] == 'imagenet-v2-top-images'
    with pytest.raises(FileNotFoundError, match='threshold0.7'):
        ImageNetV2(str(tmp_path), variant='threshold0.7')
    with pytest.raises(ValueError, match='variant'):
        ImageNetV2(str(tmp_path), variant='v3')
    make_folder_set(str(tmp_path / 'imagenetv2-threshold0.7-format-val'), {'1000': 1})
    with pytest.raises(ValueError, match=r"1000.*0\.\.999"):
        ImageNetV2(str(tmp_path), variant='threshold0.7')


def test_objectnet_mapping_chain_and_protocols(tmp_path):
    root = make_objectnet(str(tmp_path / 'objectnet-1.0'))
    paper = ObjectNet(root)
    infos = [paper.get_data_info(i) for i in range(len(paper))]
    # air_freshener (no ImageNet counterpart) is skipped; chair has no folder on disk
    assert [i['gt_label'] for i in infos] == [409, 409, 954, 954, 954]
    assert [i['gt_label_set'] for i in infos] == [[409, 530]] * 2 + [[954]] * 3
    assert paper.metainfo['eval_class_subset'] is None
    std = ObjectNet(root, protocol='standard')
    assert std.metainfo['eval_class_subset'] == OBJECTNET_SUBSET  # every mapped class, on disk or not
    # the reference's --data (the images/ folder, mappings/ beside it) works too
    assert len(ObjectNet(osp.join(root, 'images'))) == 5


def test_objectnet_errors(tmp_path):
    root = make_objectnet(str(tmp_path / 'objectnet-1.0'), with_mappings=False)
    with pytest.raises(FileNotFoundError, match=r'mappings.objectnet_to_imagenet_1k.json'):
        ObjectNet(root)
    root = make_objectnet(str(tmp_path / 'on2'), folders={'alarm_clock': 1, 'teapot_x': 1})
    with pytest.raises(ValueError, match=r'teapot_x.*folder_to_objectnet_label.json'):
        ObjectNet(root)
    with open(osp.join(root, 'mappings', 'objectnet_to_imagenet_1k.json'), 'w') as f:
        json.dump({'Alarm clock': 'analog clock; sundial'}, f)
    with pytest.raises(ValueError, match="'sundial'.*imagenet_to_label_2012_v2"):
        ObjectNet(root)


def test_si_score_factors(tmp_path):
    root = make_si_score(str(tmp_path / 'si-score'))
    for factor in ('area', 'location', 'rotation'):
        ds = SIScore(root, factor=factor)
        assert labels_of(ds) == [605, 105, 105, 9]  # ipod, koala x2, ostrich (sorted folders)
        assert ds.metainfo['dataset_name'] == f'si-score-{factor}'
    assert len(SIScore(osp.join(root, 'rotation'), factor='rotation')) == 4
    make_folder_set(osp.join(root, 'area'), {'unicorn': 1}, stray=False)
    with pytest.raises(ValueError, match=r"unicorn.*si_score_labels.json"):
        SIScore(root, factor='area')
    with pytest.raises(ValueError, match='factor'):
        SIScore(root, factor='size')


def test_crop_border():
    img = np.arange(10 * 12 * 3, dtype=np.uint8).reshape(10, 12, 3)
    out = CropBorder(pixels=3)(dict(img=img.copy(), img_shape=(10, 12)))
    assert out['img'].shape == (4, 6, 3) and out['img_shape'] == (4, 6)
    np.testing.assert_array_equal(out['img'], img[3:7, 3:9])
    with pytest.raises(ValueError, match='too small'):
        CropBorder(pixels=5)(dict(img=img, img_path='x.png'))


def test_imagenet_segmentation_reads_mat_v73(tmp_path):
    path = make_gtsegs_mat(str(tmp_path / 'gtsegs_ijcv.mat'))
    ds = ImageNetSegmentation(data_root=str(tmp_path))
    assert len(ds) == 2 and ds.metainfo['dataset_name'] == 'imagenet-segmentation'
    for i, (img, mask) in enumerate(seg_examples()):
        item = ds[i]  # empty pipeline: the raw results
        np.testing.assert_array_equal(item['img'], img[..., ::-1])  # BGR
        assert item['fg_mask'].dtype == np.float32
        np.testing.assert_array_equal(item['fg_mask'], mask)
        assert not item['ignore_mask'].any() and item['ori_shape'] == img.shape[:2]
    assert osp.samefile(ds.ann_file, path)  # the default ann_file is found under data_root


def test_imagenet_segmentation_errors(tmp_path):
    import h5py
    with pytest.raises(FileNotFoundError, match='gtsegs_ijcv.mat'):
        ImageNetSegmentation(data_root=str(tmp_path))
    (tmp_path / 'v5.mat').write_bytes(b'MATLAB 5.0 MAT-file, not HDF5' + bytes(200))
    with pytest.raises(ValueError, match=r'v5.mat.*HDF5'):
        ImageNetSegmentation(data_root=str(tmp_path), ann_file='v5.mat')
    with h5py.File(tmp_path / 'flat.mat', 'w') as f:
        f.create_dataset('value/img', data=np.zeros((2, 1)))
    with pytest.raises(ValueError, match=r'flat.mat.*/value/img'):
        ImageNetSegmentation(data_root=str(tmp_path), ann_file='flat.mat')


def test_pipeline_from_the_config_packs_labels(tmp_path, repo_root):
    from mmengine.config import Config
    from mmpretrain.registry import DATASETS
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(osp.join(repo_root, 'configs/robustness/objectnet_standard.py'))
    cfg.test_dataloader.dataset.data_root = make_objectnet(str(tmp_path / 'objectnet-1.0'))
    ds = DATASETS.build(cfg.test_dataloader.dataset)
    packed = ds[0]
    assert tuple(packed['inputs'].shape) == (3, 224, 224)
    sample = packed['data_samples']
    assert sample.gt_label.tolist() == [409] and sample.gt_label_set == [409, 530]
