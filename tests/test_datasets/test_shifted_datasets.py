"""Shifted-set datasets on miniature versions of every real layout.

The miniatures are written by ``tests/shifted_sets.py``.
"""
import json
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from robustvit_mm.datasets.imagenet_classes import imagenet_index
from robustvit_mm.datasets.shifted import (CropBorder, ImageNetA, ImageNetR, ImageNetSegmentation,
                                           ImageNetSketch, ImageNetV2, ObjectNet, SIScore,
                                           imagenet_a_wnids, imagenet_r_wnids, si_score_labels)
from shifted_sets import (A_CLASSES, OBJECTNET_SUBSET, R_CLASSES, SKETCH_CLASSES, WNIDS,
                          make_folder_set, make_gtsegs_mat, make_objectnet, make_si_score, make_v2,
                          seg_examples)


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
