"""AttentionRecorder (`robustvit_mm.relevance.capture`): the recorded maps ARE the attention.

Checked independently of the recorder's own code path: the fused forward (no recorder) is observed
through hooks on ``attn.qkv`` (its output) and ``attn.proj`` (its input); from those we recompute
softmax(q k^T d^-0.5) and check that (recorded map) @ v reproduces what the fused kernel fed to proj.
"""

import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS

import robustvit_mm  # noqa: F401
from robustvit_mm.relevance import AttentionRecorder
from robustvit_mm.relevance.capture import find_vit

init_default_scope('mmpretrain')

NUM_CLASSES = 5


def build(tiny_model, family, img_size=32, patch=4, depth=2, seed=0):
    """The shared tiny model (tests/conftest.py), with sharper attention than the init's
    near-uniform maps, so that a wrong map would be visible."""
    model = tiny_model(family, img_size=img_size, patch=patch, depth=depth, seed=seed)
    for module in attn_modules(model):
        torch.nn.init.normal_(module.qkv.weight, std=0.2)
    return model.eval()


def attn_modules(model):
    vit = getattr(model, 'backbone', None) or getattr(model, 'model', None) or model
    return [block.attn for block in (vit.layers if hasattr(vit, 'layers') else vit.blocks)]


def forward(model, inputs):
    if hasattr(model, 'data_preprocessor'):
        return model(inputs, mode='tensor')
    return model(inputs)


def observe_fused_forward(model, inputs):
    """Per block: (qkv output, proj input) of the ordinary fused forward, and the logits."""
    qkv_out, proj_in = [], []
    handles = []
    for module in attn_modules(model):
        handles.append(module.qkv.register_forward_hook(lambda m, a, out: qkv_out.append(out)))
        handles.append(module.proj.register_forward_pre_hook(lambda m, a: proj_in.append(a[0])))
    try:
        with torch.no_grad():
            logits = forward(model, inputs)
    finally:
        for handle in handles:
            handle.remove()
    return qkv_out, proj_in, logits


FAMILIES = ['vit', 'deit_distilled', 'deit3', 'timm', 'timm_classifier']


@pytest.mark.parametrize('height,width,patch', [(32, 32, 4), (64, 40, 8)])
@pytest.mark.parametrize('family', FAMILIES)
def test_recorded_maps_are_the_true_attention_probabilities(tiny_model, family, height, width,
                                                            patch):
    model = build(tiny_model, family, img_size=height, patch=patch)
    inputs = torch.randn(2, 3, height, width)
    qkv_out, proj_in, fused_logits = observe_fused_forward(model, inputs)

    with AttentionRecorder(model) as rec:
        logits = forward(model, inputs)
    modules = attn_modules(model)
    assert len(rec.maps) == len(modules) == 2
    prefix = 2 if family == 'deit_distilled' else 1
    assert rec.num_prefix == prefix
    assert rec.grid == (height // patch, width // patch)
    tokens = prefix + rec.grid[0] * rec.grid[1]

    for module, recorded, qkv, fed_to_proj in zip(modules, rec.maps, qkv_out, proj_in):
        heads = module.num_heads
        assert recorded.shape == (2, heads, tokens, tokens)
        assert recorded.requires_grad and recorded.grad_fn is not None, 'must stay in the graph'
        q, k, v = qkv.reshape(2, tokens, 3, heads, -1).permute(2, 0, 3, 1, 4)
        truth = ((q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5).softmax(dim=-1)
        torch.testing.assert_close(recorded.detach(), truth, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(recorded.detach().sum(-1), torch.ones(2, heads, tokens))
        # The recorded map is the one the fused kernel multiplied by v.
        mixed = (recorded.detach() @ v).transpose(1, 2).reshape(2, tokens, -1)
        torch.testing.assert_close(mixed, fed_to_proj, atol=1e-5, rtol=1e-5)
        # ... and it is not uniform (the check above would be weak otherwise).
        assert recorded.amax() > 2.0 / tokens

    torch.testing.assert_close(logits.detach(), fused_logits, atol=1e-5, rtol=1e-5)


def test_recorded_maps_depend_on_the_input_and_carry_gradient(tiny_model):
    model = build(tiny_model, 'vit')
    inputs = torch.randn(1, 3, 32, 32, requires_grad=True)
    with AttentionRecorder(model) as rec:
        forward(model, inputs)
    grad, = torch.autograd.grad(rec.maps[0][0, 0, 0, 1], inputs)
    assert torch.count_nonzero(grad) > 0


def _state(model):
    hooks = [(name, kind) for name, module in model.named_modules()
             for kind in ('_forward_hooks', '_forward_pre_hooks') if getattr(module, kind)]
    attrs = [dict(m.__dict__).get('scaled_dot_product_attention', dict(m.__dict__).get('fused_attn'))
             for m in attn_modules(model)]
    return hooks, attrs


@pytest.mark.parametrize('family', FAMILIES)
def test_recorder_restores_the_model_exactly(tiny_model, family):
    model = build(tiny_model, family)
    if family.startswith('timm'):
        attn_modules(model)[0].fused_attn = False  # a user setting that must survive
    inputs = torch.randn(2, 3, 32, 32)
    before = _state(model)
    with torch.no_grad():
        expected = forward(model, inputs)

    with AttentionRecorder(model) as rec:
        forward(model, inputs)
        if family.startswith('timm'):
            assert all(m.fused_attn is False for m in attn_modules(model))
        else:
            assert all(m.scaled_dot_product_attention is not F.scaled_dot_product_attention
                       for m in attn_modules(model))
    assert _state(model) == before
    if family.startswith('timm'):
        assert [m.fused_attn for m in attn_modules(model)] == [False, True]
    else:
        assert all(m.__dict__['scaled_dot_product_attention'] is F.scaled_dot_product_attention
                   for m in attn_modules(model))

    # A forward after the context records nothing more and gives the same logits.
    count = len(rec.maps)
    with torch.no_grad():
        after = forward(model, inputs)
    assert len(rec.maps) == count
    torch.testing.assert_close(after, expected, atol=0, rtol=0)

    # Restored after an exception, too; and usable again.
    with pytest.raises(RuntimeError, match='boom'):
        with AttentionRecorder(model):
            raise RuntimeError('boom')
    assert _state(model) == before


def test_recorder_is_not_reentrant_and_is_reusable(tiny_model):
    model = build(tiny_model, 'vit')
    rec = AttentionRecorder(model)
    inputs = torch.randn(1, 3, 32, 32)
    with rec:
        with pytest.raises(RuntimeError, match='already active'):
            rec.__enter__()
        forward(model, inputs)
    with rec:  # a second use starts from an empty list
        forward(model, inputs)
    assert len(rec.maps) == 2


def test_recorder_unwraps_data_parallel(tiny_model):
    model = build(tiny_model, 'vit')
    vit, family = find_vit(torch.nn.DataParallel(model))
    assert vit is model.backbone and family == 'mmpretrain'


def test_recorder_rejects_non_vit_and_class_token_free_models():
    with pytest.raises(TypeError, match='Supported'):
        AttentionRecorder(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1)))
    no_cls = MODELS.build(dict(
        type='ImageClassifier',
        backbone=dict(type='VisionTransformer', img_size=32, patch_size=4, out_type='avg_featmap',
                      with_cls_token=False,
                      arch=dict(embed_dims=32, num_layers=1, num_heads=2, feedforward_channels=64)),
        neck=None, head=dict(type='LinearClsHead', num_classes=NUM_CLASSES, in_channels=32)))
    with pytest.raises(TypeError, match='class token'):
        AttentionRecorder(no_cls)
