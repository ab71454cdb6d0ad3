"""The new-backbone configs (DeiT3-B, DINOv2-B, BEiT-v2-B, EVA-02-B): converted timm weights of
the real size fit them exactly, their normalisation is the weights' own, and each trains one epoch
through mmpretrain's STOCK train.py at tiny size, from weights made by the converter (converter ->
config -> train, as the README's new-backbone example).
"""
import os.path as osp
import subprocess
import sys

import pytest
import timm
import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS

import robustvit_mm  # noqa: F401  (registers)
from robustvit_mm.models.timm_weights import convert_timm_checkpoint
from stock_run_helpers import AUGMENTED_PIPELINES, REPO, make_tree, run, scalars

CONFIGS = osp.join(REPO, 'configs', 'robustvit')
PAPER_VIT_B = osp.join(CONFIGS, 'vit-base-p16_robustvit_imagenet-s.py')

# config: (timm weights it names, their input size, mmpretrain backbone type, tiny FFN width)
BACKBONES = {
    'deit3-base-p16_robustvit_imagenet-s.py':
        ('deit3_base_patch16_224.fb_in22k_ft_in1k', 224, 'VisionTransformer', 192),
    'dinov2-base-p14_robustvit_imagenet-s.py':
        ('vit_base_patch14_dinov2.lvd142m', 518, 'VisionTransformer', 192),
    'beitv2-base-p16_robustvit_imagenet-s.py':
        ('beitv2_base_patch16_224.in1k_ft_in22k_in1k', 224, 'BEiTViT', 192),
    'eva02-base-p14_robustvit_imagenet-s.py':
        ('eva02_base_patch14_448.mim_in22k_ft_in22k_in1k', 448, 'ViTEVA02', 128),
}


def load(config):
    return Config.fromfile(osp.join(CONFIGS, config))


@pytest.mark.parametrize('config', list(BACKBONES))
def test_config_is_a_short_delta_on_the_paper_config(config):
    cfg, paper = load(config), Config.fromfile(PAPER_VIT_B)
    weights, _, backbone, _ = BACKBONES[config]
    assert cfg.model.type == 'RelevanceGuidedClassifier'
    assert cfg.model.backbone.type == backbone
    assert cfg.model.backbone.drop_path_rate == 0 and cfg.model.backbone.get('drop_rate', 0) == 0
    assert cfg.model.head.in_channels == 768
    # the method's settings are the paper config's, unchanged
    for key in ('relevance_loss', 'relevance_target', 'create_graph'):
        assert cfg.model[key] == paper.model[key]
    for key in ('type', 'temperature', 'loss_weight', 'target'):
        assert cfg.model.head[key] == paper.model.head[key]
    assert cfg.param_scheduler == paper.param_scheduler and cfg.train_cfg == paper.train_cfg
    # the lr is the labelled, untuned rule-of-thumb value; the normalisation is the weights' own
    assert cfg.optim_wrapper.optimizer.lr == 8e-7
    assert 'NOT TUNED' in open(osp.join(CONFIGS, config)).read()
    native = timm.models.get_pretrained_cfg(weights)
    torch.testing.assert_close(torch.tensor(cfg.data_preprocessor.mean, dtype=torch.float64),
                               torch.tensor(native.mean, dtype=torch.float64) * 255)
    torch.testing.assert_close(torch.tensor(cfg.data_preprocessor.std, dtype=torch.float64),
                               torch.tensor(native.std, dtype=torch.float64) * 255)
    assert cfg.data_preprocessor.to_rgb
    assert osp.basename(cfg.load_from).startswith(config.split('_')[0])


@pytest.mark.slow
@pytest.mark.parametrize('config', list(BACKBONES))
def test_real_size_weights_convert_to_exactly_the_configs_model(tmp_path, config):
    """The named timm model at its own size (random weights), converted for the config's 224 px with
    the converter's defaults, loads strictly into the config's full-size model; EVA-02's gives the
    logits of timm's model at 224 px (the defaults: 12 heads, RoPE reference grid 16)."""
    weights, size, _, _ = BACKBONES[config]
    torch.manual_seed(0)
    source = timm.create_model(weights.split('.')[0], pretrained=False, num_classes=1000)
    torch.nn.init.normal_(source.head.weight, std=0.5)
    torch.save(source.state_dict(), tmp_path / 'timm.pth')
    convert_timm_checkpoint(tmp_path / 'timm.pth', tmp_path / 'converted.pth',
                            img_size=224 if size != 224 else None)
    model = MODELS.build(load(config).model).eval()
    state = torch.load(tmp_path / 'converted.pth', weights_only=True)['state_dict']
    model.load_state_dict(state, strict=True)
    if not config.startswith('eva02'):  # the other families' logits: test_weight_conversion.py
        return
    at_224 = timm.create_model(weights.split('.')[0], pretrained=False, num_classes=1000,
                               img_size=224).eval()
    at_224.load_state_dict(dict(source.state_dict(), pos_embed=state['backbone.pos_embed']))
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        ours, theirs = model(x, mode='tensor'), at_224(x)
    assert theirs.abs().max() > 0.1
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


TINY = '''
_base_ = [{config!r}]
data_root = {root!r}
data_prefix = {prefix!r}
model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dims=48, num_layers=2, num_heads=3,
                            feedforward_channels={ffn}), img_size=32, patch_size=8),
    head=dict(in_channels=48))
{pipelines}loader = dict(num_workers=0, persistent_workers=False, pin_memory=False)
split = dict(data_root=data_root, data_prefix=data_prefix, num_classes=6, num_samples=4)
train_dataloader = dict(batch_size=8, **loader, dataset=dict(**split, pipeline=train_pipeline))
val_dataloader = dict(batch_size=4, **loader, dataset=dict(**split, pipeline=val_pipeline))
test_dataloader = val_dataloader
load_from = {ckpt!r}
train_cfg = dict(max_epochs=1)
default_hooks = dict(logger=dict(interval=1))
custom_hooks = [dict(type='GAERelevanceHook', interval=2, num_samples=2)]
randomness = dict(seed=0)
'''


def tiny_timm_weights(config, path):
    """Tiny random timm weights of the config's family (random head: informative relevance)."""
    weights = BACKBONES[config][0].split('.')[0]
    extra = dict(ref_feat_shape=(4, 4)) if weights.startswith('eva02') else {}
    torch.manual_seed(0)
    model = timm.create_model(weights, pretrained=False, img_size=32, patch_size=8, embed_dim=48,
                              depth=2, num_heads=3, num_classes=1000, **extra)
    torch.nn.init.normal_(model.head.weight, std=0.5)
    torch.save(model.state_dict(), path)
    return model.state_dict()


@pytest.mark.slow
@pytest.mark.parametrize('config', list(BACKBONES))
def test_trains_one_epoch_through_the_stock_train_py(tmp_path, config):
    tree = make_tree(tmp_path / 'data')
    timm_state = tiny_timm_weights(config, tmp_path / 'timm.pth')
    if config.startswith('deit3'):  # the README's example, through the command line
        proc = subprocess.run([sys.executable, osp.join(REPO, 'tools', 'convert_timm_weights.py'),
                               str(tmp_path / 'timm.pth'), str(tmp_path / 'converted.pth')],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0 and 'of a vit checkpoint' in proc.stdout, proc.stderr
    else:
        options = dict(num_heads=3, rope_ref_grid=4) if config.startswith('eva02') else {}
        convert_timm_checkpoint(tmp_path / 'timm.pth', tmp_path / 'converted.pth', **options)
    path = tmp_path / 'tiny.py'
    path.write_text(TINY.format(config=osp.join(CONFIGS, config), root=tree['data_root'],
                                prefix=tree['data_prefix'], ffn=BACKBONES[config][3],
                                pipelines=AUGMENTED_PIPELINES,
                                ckpt=str(tmp_path / 'converted.pth')))
    work_dir = tmp_path / 'work'
    run('train.py', str(path), '--work-dir', str(work_dir))

    train = [r for r in scalars(str(work_dir)) if 'loss_background' in r]
    assert len(train) == 3  # 24 training images, batch 8
    for key in ('loss', 'loss_background', 'loss_foreground', 'loss_cls'):
        assert all(torch.isfinite(torch.tensor(r[key])) for r in train), key
    assert any(r['loss_background'] > 0 for r in train)  # relevance reached the loss
    trained = torch.load(work_dir / 'epoch_1.pth', map_location='cpu',
                         weights_only=False)['state_dict']
    # it started from the converted weights (the class token is not re-initialised) and moved
    start = torch.load(tmp_path / 'converted.pth', weights_only=True)['state_dict']
    delta = (trained['backbone.cls_token'] - start['backbone.cls_token']).abs().max()
    assert 0 < delta < 1e-3, delta
    assert torch.equal(start['backbone.cls_token'], timm_state['cls_token'])
    assert list((work_dir).glob('*/vis_data/vis_image/*')), 'no relevance picture was drawn'
