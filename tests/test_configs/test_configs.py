"""Every shipped config parses; the paper's numbers are where the configs say; a new backbone is a
short inheriting config that builds and trains a step."""
import glob
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS

import robustvit_mm  # noqa: F401
from robustvit_mm.models import paper_hparams
from stock_run_helpers import REPO

CONFIGS = sorted(p for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
                 if '_base_' not in p)

# The paper's hyper-parameters, stored once (Table 5; the baselines' Tables 6-7).
HPARAMS = paper_hparams()
# config prefix -> (paper model name, timm family)
MODEL_PREFIXES = {
    'vit-base-p16': ('ViT-B', False), 'vit-large-p16': ('ViT-L', False),
    'augreg-vit-small-p16': ('AR-S', True), 'augreg-vit-base-p16': ('AR-B', True),
    'augreg-vit-large-p16': ('AR-L', True), 'deit-small-p16': ('DeiT-S', False),
    'deit-base-p16': ('DeiT-B', False),
}
# The configs of the paper's seven models: RobustViT, TokenCut, baselines, ablations.
PAPER_MODEL_CONFIGS = sorted(
    p for p in CONFIGS if osp.basename(osp.dirname(p)) in ('baselines', 'robustvit')
    and osp.basename(p).split('_')[0] in MODEL_PREFIXES)


def robustvit_config(name):
    return Config.fromfile(osp.join(REPO, 'configs', 'robustvit', name))


def baseline_config(name):
    return Config.fromfile(osp.join(REPO, 'configs', 'baselines', name))


def classification_term(cfg):
    """The CE of a classifier config: ``head`` (mmpretrain) or ``loss`` (timm)."""
    return cfg.model.get('head', cfg.model.get('loss'))


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: osp.relpath(p, REPO))
def test_config_parses(path):
    cfg = Config.fromfile(path)
    assert 'model' in cfg or 'test_dataloader' in cfg or 'train_dataloader' in cfg
    # Each hook is registered once: SaveClassSplitHook by the runtime base's default_hooks only.
    hooks = list((cfg.get('default_hooks') or {}).values()) + list(cfg.get('custom_hooks') or [])
    split_hooks = [h for h in hooks if isinstance(h, dict) and h.get('type') == 'SaveClassSplitHook']
    assert len(split_hooks) <= 1, path
    train_set = (cfg.get('train_dataloader') or {}).get('dataset') or {}
    if train_set.get('type') == 'ImageNetSMaskDataset':
        assert cfg.default_hooks.get('class_split') == dict(type='SaveClassSplitHook'), path


def check_schedule(cfg, lr, batch, epochs):
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert cfg.optim_wrapper.optimizer.lr == lr
    assert cfg.optim_wrapper.optimizer.weight_decay == HPARAMS['robustvit']['weight_decay']
    assert 'paramwise_cfg' not in cfg.optim_wrapper and 'clip_grad' not in cfg.optim_wrapper
    assert cfg.param_scheduler == dict(type='StepLR', by_epoch=True,
                                       step_size=HPARAMS['robustvit']['lr_step_epochs'],
                                       gamma=HPARAMS['robustvit']['lr_gamma'])
    assert cfg.train_cfg.max_epochs == epochs and cfg.auto_scale_lr.base_batch_size == batch
    assert cfg.train_dataloader.batch_size == batch


def check_robustvit_losses(cfg, table, temperature):
    classification = classification_term(cfg)
    assert classification.temperature == temperature
    assert classification.loss_weight == table['lambda_acc']
    assert classification.target == 'own_argmax'
    relevance = cfg.model.relevance_loss
    assert (relevance.loss_weight, relevance.background_weight, relevance.foreground_weight) == \
        (table['lambda_seg'], table['lambda_bg'], table['lambda_fg'])


@pytest.mark.parametrize('variant', ['imagenet-s', 'tokencut', 'tokencut-released'])
@pytest.mark.parametrize('prefix', sorted(MODEL_PREFIXES))
def test_robustvit_and_tokencut_configs_follow_table_5(prefix, variant):
    """Every RobustViT and TokenCut config against the paper's Table 5 (and per-model lr / T);
    the ``tokencut-released`` variants against the released TokenCut script's values."""
    key, _ = MODEL_PREFIXES[prefix]
    name = {'imagenet-s': f'{prefix}_robustvit_imagenet-s.py',
            'tokencut': f'{prefix}_robustvit-tokencut_imagenet.py',
            'tokencut-released': f'{prefix}_robustvit-tokencut-released_imagenet.py'}[variant]
    cfg = robustvit_config(name)
    paper, model = HPARAMS['robustvit'], HPARAMS['robustvit']['models'][key]
    table = HPARAMS['tokencut_released'] if variant == 'tokencut-released' else paper
    check_schedule(cfg, model['lr'], table['batch_size'], table['epochs'])
    check_robustvit_losses(cfg, table, model['temperature'])
    assert cfg.val_dataloader.batch_size == 10
    assert cfg.train_dataloader.dataset.num_classes == 500
    assert cfg.train_dataloader.dataset.num_samples == 3
    assert cfg.data_preprocessor.mean == [127.5] * 3 and cfg.data_preprocessor.std == [127.5] * 3
    assert cfg.model.get('train_cfg') is None  # no Mixup/CutMix with masks
    drop_path = cfg.model.backbone.drop_path_rate if 'backbone' in cfg.model else \
        cfg.model.drop_path_rate
    assert drop_path == 0.0
    assert cfg.default_hooks.checkpoint.save_best == 'relevance/loss'
    masks = 'tokencut_masks' if variant.startswith('tokencut') else \
        'ImageNetS919/train-semi-segmentation'
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        assert loader.dataset.type == 'ImageNetSMaskDataset'
        assert loader.dataset.data_prefix.mask_path == masks


@pytest.mark.parametrize('kind', ['gradmask', 'rrr'])
@pytest.mark.parametrize('prefix', sorted(MODEL_PREFIXES))
def test_baseline_configs_follow_tables_6_7(prefix, kind):
    """Default configs: the paper's per-model lambda_cls (CE weight), lambda_bg (penalty weight) and
    lr; the models without published values and the ``-released`` variants: the released scripts'
    0.8 / 0.2 with the model's RobustViT lr. GradMask's penalty: the paper's norm by default."""
    key, _ = MODEL_PREFIXES[prefix]
    released = HPARAMS['baselines_released']
    robustvit_lr = HPARAMS['robustvit']['models'][key]['lr']
    paper = HPARAMS['baselines'][kind].get(key)
    assert (paper is None) == (key in HPARAMS['baselines']['unpublished'])
    expected = {
        '': (paper['lambda_cls'], paper['lambda_bg'], paper['lr']) if paper else
            (released['lambda_acc'], released['lambda_seg'], robustvit_lr),
        '-released': (released['lambda_acc'], released['lambda_seg'], robustvit_lr),
    }
    expected['-compat'] = expected['']
    penalty = {'gradmask': {'': 'norm', '-released': 'mean_square', '-compat': 'mean_square'},
               'rrr': {'': 'sum_square', '-released': 'sum_square', '-compat': 'sum_square'}}[kind]
    for variant, (lambda_cls, lambda_bg, lr) in expected.items():
        cfg = baseline_config(f'{prefix}_{kind}{variant}_imagenet-s.py')
        assert classification_term(cfg).loss_weight == lambda_cls, variant
        assert classification_term(cfg).target == 'gt'
        saliency = cfg.model.saliency_loss
        assert saliency.type == {'gradmask': 'GradMaskLoss', 'rrr': 'RRRLoss'}[kind]
        assert saliency.loss_weight == lambda_bg, variant
        assert saliency.penalty == penalty[variant], variant
        assert saliency.get('reference_compat', False) is (variant == '-compat')
        assert cfg.train_dataloader.sampler.shuffle is (variant != '-compat')
        assert cfg.model.relevance_loss is None
        check_schedule(cfg, lr, released['batch_size'], released['epochs'])
        assert cfg.val_dataloader.batch_size == released['val_batch_size']
        assert cfg.default_hooks.checkpoint.rule == 'less'


def test_the_paper_loss_weights_are_written_once():
    """lambda_seg / lambda_acc / lambda_bg / lambda_fg of Table 5 appear in one config file; every
    other RobustViT, TokenCut and released-baseline config inherits or references them."""
    writers = []
    for path in PAPER_MODEL_CONFIGS:
        text = open(path).read()
        if 'background_weight=2.0' in text or 'foreground_weight=0.3' in text \
                or 'loss_weight=0.8' in text:
            writers.append(osp.relpath(path, REPO))
    assert writers == ['configs/robustvit/vit-base-p16_robustvit_imagenet-s.py']


def tiny_model_cfg(model):
    """A config's model at test size: same classifier, losses and options; a 2-block ViT."""
    if 'backbone' in model:
        return dict(model, backbone=dict(model.backbone, arch=dict(
            embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64), img_size=32,
            patch_size=8), head=dict(model.head, in_channels=32, num_classes=10))
    return dict(model, model_name='vit_tiny_patch16_224', img_size=32, patch_size=8, depth=2,
                embed_dim=32, num_heads=2, num_classes=10)


@pytest.mark.parametrize('path', PAPER_MODEL_CONFIGS, ids=lambda p: osp.relpath(p, REPO))
def test_every_method_config_builds_its_model(path):
    cfg = Config.fromfile(path)
    model = MODELS.build(tiny_model_cfg(cfg.model))
    assert type(model).__name__ == cfg.model.type
    if 'saliency_loss' in cfg.model:
        penalty = model.saliency_loss
        assert type(penalty).__name__ == cfg.model.saliency_loss.type
        assert penalty.penalty == cfg.model.saliency_loss.penalty
        assert penalty.loss_weight == cfg.model.saliency_loss.loss_weight
    else:
        assert model.relevance_loss.loss_weight == cfg.model.relevance_loss.loss_weight
        assert model.create_graph is cfg.model.create_graph


def test_every_rrr_config_sums_squares_and_gradmask_says_its_penalty():
    """RRR has one form (a sum of squares), also where a config inherits a GradMask one; every
    GradMask config names its penalty (the paper's norm or the released mean of squares)."""
    seen = set()
    for path in CONFIGS:
        model = Config.fromfile(path).get('model') or {}
        saliency = model.get('saliency_loss')
        if not saliency:
            continue
        built = MODELS.build(saliency)
        seen.add(saliency.type)
        if saliency.type == 'RRRLoss':
            assert built.penalty == 'sum_square', path
        else:
            assert saliency.get('penalty') in ('norm', 'mean_square'), path
    assert seen == {'GradMaskLoss', 'RRRLoss'}



def test_every_cited_faithfulness_anchor_exists():
    """Code, configs and docs cite docs/faithfulness.md#<anchor>: each anchor is in the document."""
    with open(osp.join(REPO, 'docs', 'faithfulness.md'), encoding='utf-8') as f:
        anchors = set(re.findall(r'<a id="([a-z0-9-]+)"></a>', f.read()))
    cited = {}
    for folder in ('robustvit_mm', 'configs', 'tools', 'tests', 'docs'):
        for path in glob.glob(osp.join(REPO, folder, '**', '*'), recursive=True):
            if path.endswith(('.py', '.md')):
                with open(path, encoding='utf-8') as f:
                    for anchor in re.findall(r'faithfulness\.md#([a-z0-9-]+)', f.read()):
                        cited.setdefault(anchor, osp.relpath(path, REPO))
    assert 'baseline-hyperparameters' in cited and 'reverse-mask' in anchors
    missing = {a: p for a, p in cited.items() if a not in anchors}
    assert not missing, missing


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
