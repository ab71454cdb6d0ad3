"""Bad input gives a clear error naming the file or option: never a crash deep inside torch, a NaN,
or a silent skip. One test per case of docs/reliability.md; data cases go through the PAPER's
dataset config (real pipeline: LoadCheckedImage, LoadForegroundMask, WithMask(Resize, RandomCrop,
RandomFlip), PackInputs) on a generated ImageNet-S tree, model cases through the paper's model config.

The user-facing message of every case is listed in docs/reliability.md.
"""
import os
import os.path as osp
import re
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.dataset import pseudo_collate
from mmpretrain.registry import DATASETS, HOOKS, MODELS
from mmpretrain.structures import DataSample
from PIL import Image

import robustvit_mm  # noqa: F401
from mini_imagenet_s import make_imagenet_s_tree, write_mask_png
from stock_run_helpers import (REPO, finish, load_state, make_tree, run, save_pretrained, start,
                                 tool_env, write_config)
from robustvit_mm.engine.checkpoint_guard_hook import CheckpointGuardHook
from robustvit_mm.engine.nonfinite_hook import NonFiniteLossHook

DATA_CONFIG = osp.join(REPO, 'configs', '_base_', 'datasets', 'imagenet_s_masks.py')
PAPER_CONFIG = osp.join(REPO, 'configs', 'robustvit', 'deit-small-p16_robustvit_imagenet-s.py')
TINY_ARCH = dict(_delete_=True, embed_dims=48, num_layers=3, num_heads=3, feedforward_channels=96)


# ------------------------------------------------------------------------------------ helpers
def paper_dataset(tree, split='train', num_classes=4, num_samples=4, **overrides):
    """The paper's training (or validation) dataset config, pointed at ``tree``."""
    cfg = Config.fromfile(DATA_CONFIG)
    loader = cfg.train_dataloader if split == 'train' else cfg.val_dataloader
    ds = dict(loader.dataset)
    ds.update(data_root=tree['data_root'], data_prefix=tree['data_prefix'],
              num_classes=num_classes, num_samples=num_samples, **overrides)
    return DATASETS.build(ds)


def paper_model(**model_overrides):
    """The paper's DeiT-S RobustViT model with a tiny ViT (32 px, patch 4) and a random head."""
    cfg = Config.fromfile(PAPER_CONFIG)
    cfg.merge_from_dict(dict(model=dict(
        backbone=dict(arch=dict(TINY_ARCH), img_size=32, patch_size=4), head=dict(in_channels=48))))
    if model_overrides:
        cfg.merge_from_dict(dict(model=model_overrides))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    torch.nn.init.normal_(model.head.layers.head.weight, std=0.5)
    return model


def masked_batch(model, images, masks, labels=None):
    """Run images (uint8 (H, W, 3)) and masks ((H, W) 0/1) through the model's preprocessor."""
    samples = []
    for i, mask in enumerate(masks):
        sample = DataSample().set_gt_label(int(labels[i]) if labels is not None else i)
        sample.set_field(np.asarray(mask, np.float32), 'fg_mask')
        sample.set_field(np.zeros(mask.shape, np.float32), 'ignore_mask')
        samples.append(sample)
    inputs = [torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))) for img in images]
    return model.data_preprocessor(dict(inputs=inputs, data_samples=samples), True)


def assert_finite_step(model, data):
    """loss() and backward() give finite numbers everywhere."""
    model.zero_grad()
    losses = model.loss(**data)
    for key, value in losses.items():
        assert torch.isfinite(value).all(), (key, value)
    total = sum(v for k, v in losses.items() if 'loss' in k)
    total.backward()
    for name, param in model.named_parameters():
        if param.grad is not None:
            assert torch.isfinite(param.grad).all(), name
    return losses


def first_image_and_mask(tree):
    mask = sorted(tree['boxes'])[0]
    image = mask.replace(tree['mask_root'], tree['img_root']).replace('.png', '.JPEG')
    return image, mask


# ------------------------------------------------------------------------------------ data
def test_mask_png_missing_for_an_image(tmp_path):
    """By design only images WITH a mask are training data (ImageNet has ~1300 images per class,
    ImageNet-S masks 10): extra images are not listed. A mask that disappears after the listing
    (network file systems, a cleanup job) is an error naming the mask file."""
    tree = make_imagenet_s_tree(tmp_path, num_classes=4, per_class=2)
    wnid = tree['wnids'][0]
    Image.new('RGB', (48, 40)).save(osp.join(tree['img_root'], wnid, 'unmasked_extra.JPEG'))
    ds = paper_dataset(tree, num_classes=4, num_samples=4)
    assert len(ds) == 8 and not any('unmasked_extra' in ds.get_data_info(i)['img_path']
                                    for i in range(len(ds)))
    mask = ds.get_data_info(3)['mask_path']
    os.remove(mask)
    with pytest.raises(FileNotFoundError, match=re.escape(f'mask file {mask!r} not found')):
        ds[3]


def test_image_missing_for_a_mask(tmp_path):
    tree = make_imagenet_s_tree(tmp_path, num_classes=4, per_class=2)
    image, mask = first_image_and_mask(tree)
    os.remove(image)
    with pytest.raises(FileNotFoundError,
                       match=re.escape(f'mask {mask!r} has no image: expected {image!r}')):
        paper_dataset(tree)


def test_mask_and_image_of_different_sizes_is_an_error(tmp_path):
    """An error, never a resize: ImageNet-S masks have their image's resolution, so a mismatch
    means the pairing is wrong."""
    tree = make_imagenet_s_tree(tmp_path, num_classes=4, per_class=2)
    image, mask = first_image_and_mask(tree)
    Image.open(image).resize((50, 40)).save(image, format='JPEG')
    ds = paper_dataset(tree)
    idx = next(i for i in range(len(ds)) if ds.get_data_info(i)['mask_path'] == mask)
    with pytest.raises(ValueError, match=re.escape(f'mask {mask!r} is 40x48 (HxW) but image '
                                                   f'{image!r} is 40x50')):
        ds[idx]


def test_mask_with_two_category_ids(tmp_path):
    tree = make_imagenet_s_tree(tmp_path, num_classes=4, per_class=2)
    _, mask = first_image_and_mask(tree)
    ids = np.zeros((40, 48), np.int64)
    ids[2:10, 2:10], ids[20:30, 20:30] = 300, 919
    write_mask_png(mask, ids)
    ds = paper_dataset(tree)
    idx = next(i for i in range(len(ds)) if ds.get_data_info(i)['mask_path'] == mask)
    with pytest.raises(ValueError, match=re.escape(f'mask {mask!r} has 2 category ids [300, 919]')):
        ds[idx]


def test_empty_class_folder(tmp_path):
    tree = make_imagenet_s_tree(tmp_path, num_classes=4, per_class=2)
    folder = osp.join(tree['mask_root'], tree['wnids'][1])
    shutil.rmtree(folder)
    os.makedirs(folder)
    with pytest.raises(FileNotFoundError, match=re.escape(f'class folder {folder!r} holds no .png')):
        paper_dataset(tree, num_classes=3)
    # An empty IMAGE class folder: every mask of it names its missing image.
    tree = make_imagenet_s_tree(tmp_path / 'b', num_classes=4, per_class=2)
    images = osp.join(tree['img_root'], tree['wnids'][2])
    shutil.rmtree(images)
    os.makedirs(images)
    with pytest.raises(FileNotFoundError, match=re.escape(images) + r'.*\.JPEG'):
        paper_dataset(tree, num_classes=3)


CORRUPTIONS = {
    'truncated JPEG': ('img', lambda data: data[:len(data) * 9 // 10]),
    'JPEG without its end marker': ('img', lambda data: data[:-2]),
    'not an image': ('img', lambda data: b'<html>404 Not Found</html>'),
    'truncated PNG mask': ('mask', lambda data: data[:len(data) // 2]),
    'empty PNG mask': ('mask', lambda data: b''),
}


@pytest.mark.parametrize('case', sorted(CORRUPTIONS))
def test_corrupt_or_truncated_file_fails_naming_it(tmp_path, case):
    """Default: fail, naming the file. (opencv-python 5 refuses truncated JPEG/PNG data.)"""
    tree = make_imagenet_s_tree(tmp_path, num_classes=4, per_class=2)
    image, mask = first_image_and_mask(tree)
    which, corrupt = CORRUPTIONS[case]
    path = image if which == 'img' else mask
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(corrupt(data))
    ds = paper_dataset(tree)
    idx = next(i for i in range(len(ds)) if ds.get_data_info(i)['mask_path'] == mask)
    with pytest.raises(ValueError, match=re.escape(path)):
        ds[idx]


def test_empty_image_file_is_named(tmp_path):
    """The stock loader raised cv2's "!buf.empty() in function 'imdecode_'" with no file name."""
    tree = make_imagenet_s_tree(tmp_path, num_classes=4, per_class=2)
    image, mask = first_image_and_mask(tree)
    open(image, 'wb').close()  # an interrupted download
    ds = paper_dataset(tree)
    idx = next(i for i in range(len(ds)) if ds.get_data_info(i)['mask_path'] == mask)
    with pytest.raises(ValueError, match=re.escape(image) + r'.*empty \(0 bytes\)'):
        ds[idx]


def test_corrupt_images_skipped_with_a_warning_and_a_count_when_configured(tmp_path):
    """Stock LoadImageFromFile(ignore_empty=True) let mmengine swap in a random sample, untraced."""
    tree = make_imagenet_s_tree(tmp_path, num_classes=4, per_class=2)
    image, mask = first_image_and_mask(tree)
    with open(image, 'wb') as f:
        f.write(b'garbage')
    cfg = Config.fromfile(DATA_CONFIG)
    pipeline = list(cfg.train_pipeline)
    pipeline[0] = dict(type='LoadCheckedImage', on_corrupt='skip')
    ds = paper_dataset(tree, pipeline=pipeline)
    idx = next(i for i in range(len(ds)) if ds.get_data_info(i)['mask_path'] == mask)
    # The warning goes to mmengine's current logger (the runner's, in training): a fresh one here.
    log_file = tmp_path / 'run.log'
    MMLogger.get_instance(f'corrupt_{tmp_path.name}', log_file=str(log_file))
    item = ds[idx]  # another sample instead, with a warning naming the file and the count
    assert item['data_samples'].img_path != image
    log = log_file.read_text()
    assert re.search(re.escape(image) + r'.*\b1 corrupt image', log), log
    # 'error' (the default) fails naming the file.
    pipeline[0] = dict(type='LoadCheckedImage')
    with pytest.raises(ValueError, match=re.escape(image)):
        paper_dataset(tree, pipeline=pipeline)[idx]


def test_dataset_root_that_does_not_exist(tmp_path):
    missing = str(tmp_path / 'no_such_imagenet')
    tree = dict(data_root=missing, data_prefix=dict(img_path='train',
                                                    mask_path='ImageNetS919/train-semi-segmentation'))
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"mask root '{missing}/ImageNetS919/train-semi-segmentation' does not exist") +
            r".*data_root='" + re.escape(missing)):
        paper_dataset(tree)


# ------------------------------------------------------------------------------------ model
def test_non_vit_backbone_with_the_relevance_classifier_or_hook():
    with pytest.raises(TypeError, match=r'RelevanceGuidedClassifier with backbone ResNet.*'
                                        r'Supported: an mmpretrain ImageClassifier'):
        paper_model(backbone=dict(_delete_=True, type='ResNet', depth=18),
                    head=dict(in_channels=512))
    plain = MODELS.build(dict(type='ImageClassifier', backbone=dict(type='ResNet', depth=18),
                              neck=dict(type='GlobalAveragePooling'),
                              head=dict(type='LinearClsHead', num_classes=3, in_channels=512)))
    hook = HOOKS.build(dict(type='GAERelevanceHook'))
    with pytest.raises(TypeError, match=r'ImageClassifier with backbone ResNet.*Supported'):
        hook.before_run(SimpleNamespace(model=plain))


def test_mixup_or_cutmix_with_masks():
    with pytest.raises(ValueError, match=r'model\.train_cfg\.augments \(Mixup/CutMix\)'):
        paper_model(train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8),
                                             dict(type='CutMix', alpha=1.0)]))


def test_image_size_not_divisible_by_the_patch_size():
    model = paper_model()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (30, 30, 3), dtype=np.uint8) for _ in range(2)]
    masks = [np.ones((30, 30)) for _ in range(2)]
    with pytest.raises(ValueError, match=r'Input size 30x30 is not divisible by the patch size 4x4'):
        model.loss(**masked_batch(model, images, masks))


@pytest.mark.parametrize('fill', ['background', 'foreground'])
def test_all_background_or_all_foreground_mask(tmp_path, fill):
    """Through the real pipeline: the loss and every gradient stay finite. Such files are refused
    by default (no object; looks inverted); an all-background mask still reaches the loss when the
    random crop cuts the object away, and an all-object one with allow_inverted=True."""
    tree = make_imagenet_s_tree(tmp_path, num_classes=4, per_class=2)
    ids = np.full((40, 48), 300, np.int64)
    for mask in tree['boxes']:
        write_mask_png(mask, ids)
    cfg = Config.fromfile(DATA_CONFIG)
    assert cfg.train_pipeline[1]['type'] == 'LoadForegroundMask'
    cfg.train_pipeline[1]['allow_inverted'] = True
    cfg.train_pipeline[2]['transforms'][0]['scale'] = (36, 36)
    cfg.train_pipeline[2]['transforms'][1]['crop_size'] = 32
    ds = paper_dataset(tree, pipeline=cfg.train_pipeline)
    batch = pseudo_collate([ds[i] for i in range(4)])
    if fill == 'background':                      # the object cropped away
        for sample in batch['data_samples']:
            sample.fg_mask = sample.fg_mask * 0
    assert all(float(s.fg_mask.mean()) == (fill == 'foreground') for s in batch['data_samples'])
    model = paper_model()
    losses = assert_finite_step(model, model.data_preprocessor(batch, True))
    if fill == 'background':
        assert losses['loss_foreground'] == 0


def test_flat_image_gives_zero_relevance_and_a_finite_loss():
    """A flat (one-colour) image, and a flat relevance (a zero head: every gradient is 0): the
    relevance is zeros, never NaN, and the loss and gradients are finite."""
    images = [np.full((32, 32, 3), v, np.uint8) for v in (0, 128, 255)]
    masks = [np.zeros((32, 32)) for _ in images]
    for mask in masks:
        mask[8:24, 8:24] = 1
    model = paper_model()
    assert_finite_step(model, masked_batch(model, images, masks))
    torch.nn.init.zeros_(model.head.layers.head.weight)
    torch.nn.init.zeros_(model.head.layers.head.bias)
    data = masked_batch(model, images, masks)
    _, relevance = model._relevance_forward(data['inputs'], data['data_samples'], keep_graph=False)
    assert torch.equal(relevance, torch.zeros_like(relevance))
    assert_finite_step(model, data)


# ------------------------------------------------------------------------------------ checkpoints
def fake_runner(model, load_from=None, resume=False, work_dir='.'):
    return SimpleNamespace(model=model, _load_from=load_from, _resume=resume, work_dir=work_dir,
                           hooks=[])


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    small = paper_model()
    bigger = Config.fromfile(PAPER_CONFIG)  # the real DeiT-S (384 dims) vs the tiny 48-dim model
    path = str(tmp_path / 'deit-small.pth')
    torch.save({'state_dict': MODELS.build(bigger.model).state_dict()}, path)
    hook = CheckpointGuardHook()
    runner = fake_runner(small, load_from=path)
    hook.before_run(runner)
    with pytest.raises(ValueError, match=(
            re.escape(f"Checkpoint {path!r} does not fit the model RelevanceGuidedClassifier with "
                      'VisionTransformer (embed_dims=48, 3 layers)') +
            r'.* tensor\(s\) differ in shape: backbone\.cls_token is \(1, 1, 384\) in the file but '
            r'\(1, 1, 48\) in the model.*tensor\(s\) of the file are not in the model.*'
            r'Nothing was loaded')):
        hook.after_load_checkpoint(runner, load_state(path))
    # A ResNet checkpoint: nothing in common.
    resnet = MODELS.build(dict(type='ImageClassifier', backbone=dict(type='ResNet', depth=18)))
    with pytest.raises(ValueError, match=r'model tensor\(s\) are not in the file: backbone\.'):
        hook.after_load_checkpoint(runner, {'state_dict': resnet.state_dict()})
    # Its own checkpoint (even saved from a DDP-wrapped model) passes.
    hook.after_load_checkpoint(runner, {'state_dict': {f'module.{k}': v for k, v in
                                                       small.state_dict().items()}})


@pytest.mark.slow
def test_stock_test_py_refuses_a_checkpoint_of_another_architecture(tmp_path):
    tree = make_tree(tmp_path / 'data')
    config = write_config(tmp_path / 'tiny.py', tree, tmp_path / 'pretrained.pth')
    wrong = str(tmp_path / 'other.pth')
    torch.save({'state_dict': MODELS.build(Config.fromfile(PAPER_CONFIG).model).state_dict(),
                'meta': {}}, wrong)
    out = run('test.py', config, wrong, '--work-dir', str(tmp_path / 'test'), expect_ok=False)
    assert re.search(r"ValueError: Checkpoint '" + re.escape(wrong) + r"' does not fit the model "
                     r'RelevanceGuidedClassifier.*backbone\.cls_token is \(1, 1, 384\) in the file '
                     r'but \(1, 1, 48\)', out), out[-3000:]
    assert 'accuracy/top1' not in out  # no numbers of a randomly initialised model


@pytest.mark.slow
def test_train_and_val_class_splits_that_differ_are_refused_by_the_stock_train_py(tmp_path):
    """Another split_seed on the val side only would validate on training classes, silently."""
    tree = make_tree(tmp_path / 'data')
    pretrained = tmp_path / 'pretrained.pth'
    config = write_config(tmp_path / 'tiny.py', tree, pretrained,
                          extra="val_dataloader['dataset']['split_seed'] = 1\n")
    save_pretrained(config, pretrained)
    out = run('train.py', config, '--work-dir', str(tmp_path / 'work'), expect_ok=False)
    assert re.search(r'ValueError: train_dataloader and val_dataloader split the ImageNet-S classes '
                     r"differently: train_dataloader\.dataset has num_classes=6, split_seed=0, "
                     r"class_order='shuffled'.*val_dataloader\.dataset has num_classes=6, "
                     r'split_seed=1', out), out[-3000:]
    assert 'Epoch(train)' not in out


@pytest.mark.slow
def test_num_classes_smaller_than_the_labels_is_refused_before_the_first_step(tmp_path):
    """A 500-way head with ImageNet-1k labels crashed in GAERelevanceHook with "index 532 is out of
    bounds"; now the stock train.py stops before the first step, naming labels and num_classes."""
    tree = make_tree(tmp_path / 'data')
    pretrained = tmp_path / 'pretrained.pth'
    config = write_config(tmp_path / 'tiny.py', tree, pretrained,
                          extra='model = dict(head=dict(num_classes=500))\n')
    save_pretrained(config, pretrained)
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')
    dataset = DATASETS.build(Config.fromfile(config).train_dataloader.dataset)
    labels = [dataset.get_data_info(i)['gt_label'] for i in range(len(dataset))]
    too_big = [label for label in labels if label >= 500]
    assert too_big and min(labels) < 500
    out = run('train.py', config, '--work-dir', str(tmp_path / 'work'), expect_ok=False)
    assert re.search(rf"ValueError: train_dataloader: {len(too_big)} of {len(labels)} samples of "
                     r"ImageNetSMaskDataset have labels outside the model's num_classes=500 "
                     rf'\(labels must be < 500\), e\.g\. {too_big[0]} \(', out), out[-3000:]
    assert 'out of bounds' not in out and 'Epoch(train)' not in out
    # The suggested fix is complete: every loader and the model's classes.
    assert ("set labels='sorted_folders' in every loader (train_dataloader.dataset, "
            'val_dataloader.dataset and test_dataloader.dataset) and the number of class folders '
            'as model.head.num_classes and data_preprocessor.num_classes') in out, out[-3000:]


# ------------------------------------------------------------------------------------ shifted sets
def test_objectnet_root_without_its_mappings_folder(tmp_path):
    root = tmp_path / 'objectnet-1.0'
    os.makedirs(root / 'images' / 'air_freshener')
    Image.new('RGB', (8, 8)).save(root / 'images' / 'air_freshener' / 'a.png')
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"ObjectNet: mapping file '{root}/mappings/objectnet_to_imagenet_1k.json' not found")):
        DATASETS.build(dict(type='ObjectNet', data_root=str(root)))


def _write_h5(path, build):
    import h5py
    with h5py.File(path, 'w') as f:
        build(f)
    return str(path)


def _refs_to(f, arrays, name):
    import h5py
    group = f.require_group('#refs#')
    refs = np.empty((len(arrays), 1), dtype=h5py.ref_dtype)
    for i, array in enumerate(arrays):
        refs[i, 0] = group.create_dataset(f'{name}{i}', data=array).ref
    return refs


def _cells_to(f, masks):
    """MATLAB cells: each (1, 1) reference array points to the mask."""
    import h5py
    cells = [np.array([[ref[0]]], dtype=h5py.ref_dtype) for ref in _refs_to(f, masks, 'mask')]
    return _refs_to(f, cells, 'cell')


MAT_CASES = {
    'not HDF5 (a MATLAB v5 file)': (lambda p: (p.write_bytes(b'MATLAB 5.0 MAT-file' + bytes(200)),
                                               str(p))[1], r'cannot open .* as HDF5'),
    'no /value/gt': (lambda p: _write_h5(p, lambda f: f.create_dataset(
        'value/img', data=_refs_to(f, [np.zeros((3, 8, 8), np.uint8)], 'img'))),
        r'/value/gt is missing'),
    '/value/img holds numbers, not references': (lambda p: _write_h5(p, lambda f: (
        f.create_dataset('value/img', data=np.zeros((1, 1))),
        f.create_dataset('value/gt', data=np.zeros((1, 1))))), r'/value/img is Dataset \(1, 1\)'),
    'masks stored directly, not in cells': (lambda p: _write_h5(p, lambda f: (
        f.create_dataset('value/img', data=_refs_to(f, [np.zeros((3, 8, 8), np.uint8)], 'img')),
        f.create_dataset('value/gt', data=_refs_to(f, [np.zeros((8, 8), np.uint8)], 'gt')))),
        r'entry 0: cannot dereference'),
    'image of the wrong shape': (lambda p: _write_h5(p, lambda f: (
        f.create_dataset('value/img', data=_refs_to(f, [np.zeros((8, 8), np.uint8)], 'img')),
        f.create_dataset('value/gt', data=_cells_to(f, [np.zeros((8, 8), np.uint8)])))),
        r'entry 0: image array of shape \(8, 8\), expected \(3, W, H\)'),
}


@pytest.mark.parametrize('case', sorted(MAT_CASES))
def test_mat_file_of_the_wrong_structure(tmp_path, case):
    build, message = MAT_CASES[case]
    path = build(tmp_path / 'gtsegs_ijcv.mat')
    with pytest.raises(ValueError, match=r'^ImageNetSegmentation: .*' + message) as err:
        DATASETS.build(dict(type='ImageNetSegmentation', data_root='', ann_file=path))
    assert repr(path) in str(err.value)


# ------------------------------------------------------------------------------------ no NaN ever
def test_nonfinite_training_loss_names_iteration_terms_and_samples(tmp_path):
    hook = NonFiniteLossHook()
    samples = [DataSample(metainfo=dict(sample_idx=i, img_path=f'/data/train/n01/img_{i}.JPEG'))
               for i in (6, 7)]
    runner = SimpleNamespace(iter=41, epoch=3, work_dir=str(tmp_path),
                             train_loop=SimpleNamespace(_max_epochs=50))
    (tmp_path / 'last_checkpoint').write_text('/work/epoch_3.pth')
    finite = dict(loss=torch.tensor(0.3), loss_cls=torch.tensor(0.1), relevance_iou=0.5)
    hook.after_train_iter(runner, 1, dict(data_samples=samples), finite)  # nothing happens
    bad = dict(loss=torch.tensor(float('nan')), loss_background=torch.tensor(float('nan')),
               loss_cls=torch.tensor(0.1), loss_foreground=torch.tensor(float('inf')))
    with pytest.raises(FloatingPointError, match=(
            r'non-finite training loss at iteration 42 \(epoch 4, batch 2 of the epoch\): '
            r'loss=nan, loss_background=nan, loss_foreground=inf\. Samples of this batch: '
            r'sample_idx 6 /data/train/n01/img_6\.JPEG; sample_idx 7 /data/train/n01/img_7\.JPEG\. '
            r'.*the last checkpoint is /work/epoch_3\.pth')):
        hook.after_train_iter(runner, 1, dict(data_samples=samples), bad)


def test_nonfinite_validation_loss_stops_training(tmp_path):
    hook = NonFiniteLossHook()
    runner = SimpleNamespace(epoch=2, logger=None)
    good = DataSample(metainfo=dict(sample_idx=0, img_path='a.JPEG'))
    good.set_field(dict(loss_background=0.1, loss_cls=0.2), 'relevance_losses',
                   field_type='metainfo')
    bad = DataSample(metainfo=dict(sample_idx=1, img_path='b.JPEG'))
    bad.set_field(dict(loss_background=float('nan'), loss_cls=0.2), 'relevance_losses',
                  field_type='metainfo')
    hook.before_val_epoch(runner)
    hook.after_val_iter(runner, 0, None, [good, bad])
    with pytest.raises(FloatingPointError, match=r'validation result after epoch 2: '
                                                 r'relevance/loss=nan.*sample_idx 1 b\.JPEG: '
                                                 r'loss_background=nan'):
        hook.after_val_epoch(runner, {'relevance/loss': float('nan'), 'accuracy/top1': 50.0})
    hook.before_val_epoch(runner)
    hook.after_val_iter(runner, 0, None, [good])
    hook.after_val_epoch(runner, {'relevance/loss': 0.3})  # finite: nothing happens


POISON_MODULE = '''
import numpy as np
from mmcv.transforms import BaseTransform
from mmpretrain.registry import TRANSFORMS


@TRANSFORMS.register_module()
class PoisonOnSecondVisit(BaseTransform):
    """Turn one image into NaN from its second loading on (epoch 2): a NaN appearing mid-run."""

    def __init__(self, img_path):
        self.img_path = img_path
        self.visits = 0

    def transform(self, results):
        if results['img_path'] == self.img_path:
            self.visits += 1
            if self.visits >= 2:
                results['img'] = np.full(results['img'].shape, np.nan, np.float32)
        return results
'''


@pytest.mark.slow
def test_nonfinite_loss_stops_the_stock_train_py_and_keeps_the_checkpoints(tmp_path):
    tree = make_tree(tmp_path / 'data')
    (tmp_path / 'poison_on_second_visit.py').write_text(POISON_MODULE)
    pretrained = tmp_path / 'pretrained.pth'
    clean = write_config(tmp_path / 'clean.py', tree, pretrained)
    save_pretrained(clean, pretrained)
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')
    dataset = DATASETS.build(Config.fromfile(clean).train_dataloader.dataset)
    victim = dataset.get_data_info(5)['img_path']  # batch 1 (samples 0-7); not a hook picture
    extra = f'''
custom_imports = dict(imports=['robustvit_mm', 'poison_on_second_visit'], allow_failed_imports=False)
train_dataloader['dataset']['pipeline'] = train_pipeline[:3] + [
    dict(type='PoisonOnSecondVisit', img_path={victim!r})] + train_pipeline[3:]
'''
    config = write_config(tmp_path / 'poisoned.py', tree, pretrained, epochs=2, extra=extra)
    work = str(tmp_path / 'work')
    out = finish(start('train.py', config, '--work-dir', work,
                       env=tool_env(PYTHONPATH=str(tmp_path))), expect_ok=False)
    assert re.search(r'FloatingPointError: NonFiniteLossHook: non-finite training loss at iteration '
                     r'4 \(epoch 2, batch 1 of the epoch\): loss=nan, loss_background=nan.*'
                     r'sample_idx 5 ' + re.escape(victim), out), out[-3000:]
    # Nothing of the NaN iteration was written; epoch 1 is intact and resumable.
    files = os.listdir(work)
    assert 'epoch_2.pth' not in files and 'best_relevance_loss_epoch_1.pth' in files, files
    with open(osp.join(work, 'last_checkpoint')) as f:
        assert f.read().strip() == osp.join(work, 'epoch_1.pth')
    state = load_state(osp.join(work, 'epoch_1.pth'))['state_dict']
    assert all(torch.isfinite(v).all() for v in state.values())


# ------------------------------------------------------------------------------------ trust
class _RunsCodeWhenUnpickled:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_remote_checkpoints_keep_torch_safe_loading(tmp_path, monkeypatch):
    from mmengine.runner import CheckpointLoader
    evil = tmp_path / 'evil.pth'
    marker = str(tmp_path / 'code_ran')
    torch.save({'state_dict': {}, 'payload': _RunsCodeWhenUnpickled(marker)}, evil)
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'hub'))

    def fake_download(url, dst, *args, **kwargs):  # no network: the "server" sends evil.pth
        shutil.copyfile(evil, dst)
    monkeypatch.setattr(torch.hub, 'download_url_to_file', fake_download)
    try:
        with pytest.raises(Exception, match='(?i)weights_only|unpickl'):
            CheckpointLoader.load_checkpoint('https://example.invalid/model.pth',
                                             map_location='cpu')
    finally:
        ran = osp.exists(marker)
    assert not ran, 'unpickling a downloaded checkpoint ran code'
