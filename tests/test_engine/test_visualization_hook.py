"""GAERelevanceHook with the real mmengine Runner: pictures written through the visualizer, RGB kept."""
import glob
import os.path as osp

import cv2
import numpy as np
import pytest
from mmengine.runner import Runner

import robustvit_mm  # noqa: F401
from robustvit_mm.datasets.synthetic import SyntheticSpuriousDataset

PIPELINE = [dict(type='PackInputs', algorithm_keys=['fg_mask', 'ignore_mask'])]


def runner_config(work_dir):
    dataset = dict(type='SyntheticSpuriousDataset', split='masked', num_per_class=1,
                   pipeline=PIPELINE)
    loader = dict(batch_size=5, num_workers=0, dataset=dataset,
                  sampler=dict(type='DefaultSampler', shuffle=False))
    return dict(
        default_scope='mmpretrain',
        work_dir=str(work_dir),
        model=dict(
            type='RelevanceGuidedClassifier',
            backbone=dict(type='VisionTransformer', img_size=32, patch_size=4,
                          arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                                    feedforward_channels=64)),
            head=dict(type='ConfidenceBoostingHead', num_classes=10, in_channels=32),
            data_preprocessor=dict(type='ClsDataPreprocessor', mean=[127.5] * 3,
                                   std=[127.5] * 3, to_rgb=True)),
        train_dataloader=loader, val_dataloader=loader,
        val_evaluator=dict(type='RelevanceFinetuneMetric'),
        train_cfg=dict(by_epoch=True, max_epochs=1, val_interval=1), val_cfg=dict(),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        custom_hooks=[dict(type='GAERelevanceHook', interval=1, num_samples=2)],
        visualizer=dict(type='UniversalVisualizer', vis_backends=[dict(type='LocalVisBackend')]),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)),
    )


def test_hook_draws_rgb_panels_through_the_visualizer(tmp_path):
    runner = Runner.from_cfg(runner_config(tmp_path))
    runner.train()
    pictures = glob.glob(osp.join(str(tmp_path), '*', 'vis_data', 'vis_image', '*.png'))
    names = {osp.basename(p).rsplit('_', 1)[0] for p in pictures}
    assert {'relevance_train', 'relevance_val'} <= names, pictures
    val = sorted(p for p in pictures if 'relevance_val' in p)[-1]
    picture = cv2.cvtColor(cv2.imread(val), cv2.COLOR_BGR2RGB)
    # two rows (samples) of four 32-px panels: image | image*mask | before | now
    assert picture.shape[:2] == (2 * 32 + 2, 4 * 32 + 3 * 2)
    first_image = picture[:32, :32].astype(int)
    expected = SyntheticSpuriousDataset(split='masked', num_per_class=1)[0]['img'][..., ::-1]
    assert np.abs(first_image - expected.astype(int)).mean() < 2  # RGB, not channel-swapped
    swapped = expected[..., ::-1].astype(int)
    assert np.abs(first_image - swapped).mean() > 5


def test_hook_refuses_a_non_vit_model(tmp_path):
    cfg = runner_config(tmp_path)
    cfg['model'] = dict(type='ImageClassifier', backbone=dict(type='ResNet', depth=18),
                        neck=dict(type='GlobalAveragePooling'),
                        head=dict(type='LinearClsHead', num_classes=10, in_channels=512))
    cfg['val_evaluator'] = dict(type='Accuracy')
    runner = Runner.from_cfg(cfg)
    with pytest.raises(TypeError, match='Supported'):
        runner.train()
