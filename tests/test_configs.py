"""Every shipped config parses; the paper's numbers are where the configs say; a new backbone is a
short inheriting config that builds and trains a step."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS

import robustvit_mm  # noqa: F401

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(p for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
                 if '_base_' not in p)

PAPER = {  # config -> (lr, temperature), from the authors' README
    'vit-base-p16_robustvit_imagenet-s.py': (3e-6, 1.0),
    'vit-large-p16_robustvit_imagenet-s.py': (9e-7, 1.0),
    'augreg-vit-small-p16_robustvit_imagenet-s.py': (2e-6, 1.0),
    'augreg-vit-base-p16_robustvit_imagenet-s.py': (6e-7, 1.0),
    'augreg-vit-large-p16_robustvit_imagenet-s.py': (9e-7, 1.0),
    'deit-small-p16_robustvit_imagenet-s.py': (1e-6, 0.55),
    'deit-base-p16_robustvit_imagenet-s.py': (8e-7, 0.65),
}


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: osp.relpath(p, REPO))
def test_config_parses(path):
    cfg = Config.fromfile(path)
    assert 'model' in cfg or 'test_dataloader' in cfg or 'train_dataloader' in cfg


@pytest.mark.parametrize('name', sorted(PAPER))
def test_paper_recipe(name):
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'robustvit', name))
    lr, temperature = PAPER[name]
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert cfg.optim_wrapper.optimizer.lr == lr
    assert cfg.optim_wrapper.optimizer.weight_decay == 1e-4
    assert 'paramwise_cfg' not in cfg.optim_wrapper and 'clip_grad' not in cfg.optim_wrapper
    assert cfg.param_scheduler == dict(type='StepLR', by_epoch=True, step_size=2, gamma=0.85)
    assert cfg.train_cfg.max_epochs == 50 and cfg.auto_scale_lr.base_batch_size == 8
    assert cfg.train_dataloader.batch_size == 8 and cfg.val_dataloader.batch_size == 10
    assert cfg.train_dataloader.dataset.num_classes == 500
    assert cfg.train_dataloader.dataset.num_samples == 3
    assert cfg.data_preprocessor.mean == [127.5] * 3 and cfg.data_preprocessor.std == [127.5] * 3
    classification = cfg.model.get('head', cfg.model.get('loss'))
    assert classification.temperature == temperature and classification.loss_weight == 0.2
    assert classification.target == 'own_argmax'
    relevance = cfg.model.relevance_loss
    assert (relevance.loss_weight, relevance.background_weight, relevance.foreground_weight) == \
        (0.8, 2.0, 0.3)
    assert cfg.model.get('train_cfg') is None  # no Mixup/CutMix with masks
    drop_path = cfg.model.backbone.drop_path_rate if 'backbone' in cfg.model else \
        cfg.model.drop_path_rate
    assert drop_path == 0.0
    assert cfg.default_hooks.checkpoint.save_best == 'relevance/loss'


NEW_BACKBONE = '''
_base_ = {base!r}
load_from = None
model = dict(
    backbone=dict(_delete_=True, type='DeiT3', arch='s', img_size=32, patch_size=8,
                  drop_path_rate=0.0),
    head=dict(in_channels=384, num_classes=10, temperature=1.0))
optim_wrapper = dict(optimizer=dict(lr=1e-6))
'''


def test_new_backbone_is_a_short_inheriting_config(tmp_path):
    path = tmp_path / 'deit3-small_robustvit.py'
    path.write_text(NEW_BACKBONE.format(
        base=osp.join(REPO, 'configs', 'robustvit', 'vit-base-p16_robustvit_imagenet-s.py')))
    cfg = Config.fromfile(str(path))
    model = MODELS.build(cfg.model)
    assert type(model).__name__ == 'RelevanceGuidedClassifier'
    torch.nn.init.normal_(model.head.layers.head.weight, std=0.5)
    from mmpretrain.structures import DataSample
    samples = []
    for label in range(2):
        sample = DataSample().set_gt_label(label)
        mask = torch.zeros(32, 32)
        mask[8:24, 8:24] = 1
        sample.set_field(mask.numpy(), 'fg_mask')
        samples.append(sample)
    losses = model.loss(torch.randn(2, 3, 32, 32), samples)
    total, _ = model.parse_losses(losses)
    assert torch.isfinite(total) and total > 0
