"""Checkpoints written by the stock tools load again under torch >= 2.6 (weights_only=True default).

mmengine 0.10.7 checkpoints hold a HistoryBuffer and numpy objects, so without the plugin's local
loader (`robustvit_mm.checkpoint`) `test.py CKPT` and `train.py --resume` die with an UnpicklingError.
The end-to-end test runs the STOCK mmpretrain tools as subprocesses, with
TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD removed from their environment, so only the plugin can make them pass.
"""
import os
import os.path as osp
import re
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
import torch
from mmengine.runner import CheckpointLoader

import mmpretrain
import robustvit_mm  # noqa: F401  (importing the plugin registers the local loader)
from robustvit_mm.checkpoint import enable_local_checkpoint_loading, load_from_local_trusted

TOOLS = osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'tools')

CONFIG = '''
_base_ = ['mmpretrain::_base_/default_runtime.py']
custom_imports = dict(imports=['robustvit_mm'], allow_failed_imports=False)
default_scope = 'mmpretrain'

model = dict(
    type='ImageClassifier',
    backbone=dict(type='VisionTransformer', img_size=32, patch_size=8,
                  arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)),
    neck=None,
    head=dict(type='VisionTransformerClsHead', num_classes=2, in_channels=32,
              loss=dict(type='CrossEntropyLoss')))
data_preprocessor = dict(num_classes=2, mean=[127.5] * 3, std=[127.5] * 3, to_rgb=True)

pipeline = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=32), dict(type='PackInputs')]
_loader = dict(batch_size=4, num_workers=0, persistent_workers=False, pin_memory=False,
               dataset=dict(type='CustomDataset', data_root={root!r}, pipeline=pipeline))
train_dataloader = dict(_loader, sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(_loader, sampler=dict(type='DefaultSampler', shuffle=False))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1,))
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=1e-4))
train_cfg = dict(by_epoch=True, max_epochs={max_epochs}, val_interval=1)
val_cfg = dict()
test_cfg = dict()

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1),
    checkpoint=dict(type='CheckpointHook', interval=1))
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='gloo'))
log_processor = dict(by_epoch=True)
visualizer = dict(type='UniversalVisualizer', vis_backends=[dict(type='LocalVisBackend')])
randomness = dict(seed=0)
'''


def make_image_folder(root, classes=('cat', 'dog'), per_class=4, size=32):
    """A tiny ImageFolder of real JPEGs: class 0 dark, class 1 bright, with noise."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(classes):
        os.makedirs(osp.join(root, name), exist_ok=True)
        for i in range(per_class):
            base = 60 if label == 0 else 190
            image = np.clip(base + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
            assert cv2.imwrite(osp.join(root, name, f'{i}.jpg'), image)
    return root


def write_config(path, root, max_epochs):
    with open(path, 'w') as f:
        f.write(textwrap.dedent(CONFIG).format(root=root, max_epochs=max_epochs))
    return path


def run_tool(args, cwd):
    env = dict(os.environ)
    env.pop('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', None)  # only the plugin may make loading work
    env['OMP_NUM_THREADS'] = '1'
    env.pop('CUDA_VISIBLE_DEVICES', None)
    env['CUDA_VISIBLE_DEVICES'] = ''
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f'{args[0]} failed ({result.returncode}):\n{output[-6000:]}'
    assert 'UnpicklingError' not in output and 'weights_only' not in output, output[-4000:]
    return output


@pytest.mark.slow
def test_stock_train_test_and_resume_load_our_checkpoints(tmp_path):
    root = make_image_folder(str(tmp_path / 'data'))
    work_dir = str(tmp_path / 'work')
    config = write_config(str(tmp_path / 'tiny_vit.py'), root, max_epochs=1)

    run_tool([osp.join(TOOLS, 'train.py'), config, '--work-dir', work_dir], cwd=str(tmp_path))
    checkpoint = osp.join(work_dir, 'epoch_1.pth')
    assert osp.isfile(checkpoint)
    # The file really is one that torch's weights_only default refuses (otherwise the test is moot).
    with pytest.raises(Exception, match='weights_only|Unpickl|global'):
        torch.load(checkpoint, map_location='cpu', weights_only=True)

    output = run_tool([osp.join(TOOLS, 'test.py'), config, checkpoint, '--work-dir', work_dir],
                      cwd=str(tmp_path))
    assert 'Load checkpoint from' in output
    assert re.search(r'accuracy/top1: \d+\.\d+', output), output[-3000:]

    # Resume: two epochs now, the run must continue from epoch 1, not start over.
    write_config(config, root, max_epochs=2)
    output = run_tool([osp.join(TOOLS, 'train.py'), config, '--work-dir', work_dir, '--resume'],
                      cwd=str(tmp_path))
    assert re.search(r'resumed epoch: 1', output), output[-3000:]
    assert 'Epoch(train) [1]' not in output, 'training restarted from epoch 1'
    assert 'Epoch(train) [2]' in output
    assert osp.isfile(osp.join(work_dir, 'epoch_2.pth'))
    state = load_from_local_trusted(osp.join(work_dir, 'epoch_2.pth'), map_location='cpu')
    assert state['meta']['epoch'] == 2


def test_local_paths_use_our_loader_and_urls_do_not():
    enable_local_checkpoint_loading()  # idempotent; importing robustvit_mm already did it
    assert CheckpointLoader._get_checkpoint_loader('/tmp/model.pth') is load_from_local_trusted
    assert CheckpointLoader._get_checkpoint_loader('work_dirs/epoch_1.pth') is load_from_local_trusted
    for url in ('https://x/y.pth', 'http://x/y.pth'):
        loader = CheckpointLoader._get_checkpoint_loader(url)
        assert loader is not load_from_local_trusted, f'{url} must keep the safe (weights_only) loader'
    # Other schemes keep their own loaders too.
    assert CheckpointLoader._get_checkpoint_loader('open-mmlab://resnet50') is not \
        load_from_local_trusted


def test_local_loader_reads_mmengine_style_checkpoints_and_names_missing_files(tmp_path):
    from mmengine.logging import HistoryBuffer
    path = str(tmp_path / 'ckpt.pth')
    torch.save({'state_dict': {'w': torch.ones(2)},
                'message_hub': {'log_scalars': {'loss': HistoryBuffer([1.0, 2.0], [1, 1])}},
                'meta': {'epoch': np.int64(3)}}, path)
    state = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    assert torch.equal(state['state_dict']['w'], torch.ones(2))
    assert state['meta']['epoch'] == 3

    missing = str(tmp_path / 'nope.pth')
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        CheckpointLoader.load_checkpoint(missing)
