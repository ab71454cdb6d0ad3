"""robustvit_mm.engine.checkpoint_check: the one "does this checkpoint fit this model" check, with the likely
fix in the message, used by test.py (through CheckpointGuardHook), the report and the inferencer."""
import re

import pytest
import torch
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS

import robustvit_mm  # noqa: F401
from robustvit_mm.engine.checkpoint_check import checkpoint_classes, load_checked_checkpoint

VIT = dict(type='ImageClassifier',
           backbone=dict(type='VisionTransformer', img_size=32, patch_size=8,
                         arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                                   feedforward_channels=64)),
           neck=None, head=dict(type='VisionTransformerClsHead', num_classes=5, in_channels=32))


def build(cfg=VIT, seed=0):
    init_default_scope('mmpretrain')
    torch.manual_seed(seed)
    model = MODELS.build(cfg)
    for param in getattr(model, 'head', torch.nn.Identity()).parameters():
        torch.nn.init.normal_(param)  # a fresh ViT head is zero: nothing would show
    return model.eval()


def timm_vit(seed=1):
    from timm.models.vision_transformer import VisionTransformer
    torch.manual_seed(seed)
    return VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
                             mlp_ratio=2.0, num_classes=5).eval()


def params(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def unchanged(model, before):
    return all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_own_checkpoint_loads_with_its_class_names(tmp_path):
    source, target = build(seed=0), build(seed=5)
    path = str(tmp_path / 'own.pth')
    # as saved from a DDP-wrapped model: 'module.' prefixes
    torch.save({'state_dict': {f'module.{k}': v for k, v in source.state_dict().items()},
                'meta': {'dataset_meta': {'classes': list('abcde')}}}, path)
    checkpoint = load_checked_checkpoint(target, path)
    assert checkpoint_classes(checkpoint) == list('abcde')
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)


def test_unconverted_timm_weights_name_the_converter(tmp_path):
    path = str(tmp_path / 'timm.pth')
    torch.save(timm_vit().state_dict(), path)  # a bare timm state dict, as timm publishes them
    model = build()
    before = params(model)
    with pytest.raises(ValueError) as error:
        load_checked_checkpoint(model, path)
    message = str(error.value)
    assert message.startswith(f"Checkpoint {path!r} does not fit the model ImageClassifier with "
                              'VisionTransformer (embed_dims=32, 2 layers)'), message
    assert re.search(r'model tensor\(s\) are not in the file: backbone\.', message), message
    assert 'tensor(s) of the file are not in the model: cls_token' in message, message
    assert 'blocks.0.' in message and 'convert them with tools/convert_timm_weights.py' in message
    assert message.endswith('Nothing was loaded.')
    assert unchanged(model, before)

    # converted, the same file loads strictly and gives timm's logits
    from robustvit_mm.models.timm_weights import convert_timm_checkpoint
    converted = str(tmp_path / 'converted.pth')
    convert_timm_checkpoint(path, converted)
    load_checked_checkpoint(model, converted)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(x), timm_vit()(x), rtol=1e-4, atol=1e-4)


def test_cnn_and_mmpretrain_weights_into_the_wrong_model_say_wrong_config(tmp_path):
    resnet = build(dict(type='ImageClassifier', backbone=dict(type='ResNet', depth=18),
                        neck=dict(type='GlobalAveragePooling'),
                        head=dict(type='LinearClsHead', num_classes=5, in_channels=512)))
    path = str(tmp_path / 'resnet.pth')
    torch.save({'state_dict': resnet.state_dict()}, path)
    with pytest.raises(ValueError, match=r"convolutional network.*wrong config.*"
                       r'Nothing was loaded'):
        load_checked_checkpoint(build(), path)

    timm_model = build(dict(type='TimmClassifier', model_name='vit_tiny_patch16_224',
                            pretrained=False, img_size=32, patch_size=8, embed_dim=32, depth=2,
                            num_heads=2, mlp_ratio=2.0, num_classes=5))
    path = str(tmp_path / 'mmpretrain.pth')
    torch.save({'state_dict': build().state_dict()}, path)
    with pytest.raises(ValueError, match=r'mmpretrain-format weights.*timm model: '
                       r'wrong config'):
        load_checked_checkpoint(timm_model, path)


def test_partial_loading_is_explicit_and_never_accepts_other_shapes(tmp_path):
    source = build(seed=0)
    backbone_only = {k: v for k, v in source.state_dict().items() if not k.startswith('head.')}
    path = str(tmp_path / 'backbone.pth')
    torch.save({'state_dict': backbone_only}, path)
    model = build(seed=5)
    with pytest.raises(ValueError, match=r'2 model tensor\(s\) are not in the file: '
                       r'head\.layers\.head\.weight, head\.layers\.head\.bias'):
        load_checked_checkpoint(model, path)
    head = model.head.layers.head.weight.clone()
    load_checked_checkpoint(model, path, allow_partial=True)
    assert torch.equal(model.head.layers.head.weight, head)  # kept its own values
    assert torch.equal(model.backbone.cls_token, source.backbone.cls_token)

    wider = dict(VIT, head=dict(VIT['head'], num_classes=7))
    path = str(tmp_path / 'seven.pth')
    torch.save({'state_dict': build(wider).state_dict()}, path)
    with pytest.raises(ValueError, match=r'head\.layers\.head\.weight is \(7, 32\) in '
                       r'the file but \(5, 32\) in the model'):
        load_checked_checkpoint(build(), path, allow_partial=True)


def test_training_guard_hook_gives_the_same_message(tmp_path):
    """CheckpointGuardHook (stock train.py / test.py through the runtime and robustness bases)
    calls the same check: an unconverted timm file names the converter there too."""
    from types import SimpleNamespace
    from robustvit_mm.engine.checkpoint_guard_hook import CheckpointGuardHook
    path = str(tmp_path / 'timm.pth')
    model = build()
    runner = SimpleNamespace(model=model, _load_from=path, _resume=False, work_dir=str(tmp_path),
                             hooks=[])
    hook = CheckpointGuardHook()
    hook.before_run(runner)
    with pytest.raises(ValueError, match=re.escape(f"Checkpoint {path!r} does not fit the model ") +
                       r'.*convert them with tools/convert_timm_weights\.py.*Nothing was loaded'):
        hook.after_load_checkpoint(runner, {'state_dict': timm_vit().state_dict()})
