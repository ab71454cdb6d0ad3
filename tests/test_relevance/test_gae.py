"""The GAE engine (`robustvit_mm.relevance.gae`) against a deliberately simple reference.

The reference (``robustvit_mm.relevance.reference.reference_gae``, also the benchmark's reference-style
step) is kept as literal as the released code: the full (B, N, N) matrix R, one separate
``autograd.grad`` per block and a min-max without epsilon. The engine uses a row-vector shortcut and
ONE ``autograd.grad``; both must give the same maps to 1e-5 for every supported model family, at
several resolutions, square or not. That the recorded maps ARE the attention probabilities is
checked independently of the recorder (from the fused forward's q/k/v and attention output).
"""
import inspect
import warnings

import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS

import robustvit_mm  # noqa: F401  (registers the plugin, as a config's custom_imports would)
from robustvit_mm.relevance import AttentionRecorder, attention_rollout, gae_relevance, raw_attention
from robustvit_mm.relevance.reference import reference_gae

init_default_scope('mmpretrain')

NUM_CLASSES = 7


# --------------------------------------------------------------------------- tiny models
# Built by the shared fixtures (tests/conftest.py: tiny_model(family, ...), head randomised).


def plain_logits(model, inputs):
    """The model's ordinary forward (fused attention), as the rest of the world calls it."""
    if hasattr(model, 'data_preprocessor'):  # mmpretrain ImageClassifier / TimmClassifier
        return model(inputs, mode='tensor')
    return model(inputs)


def vit_of(model):
    return getattr(model, 'backbone', None) or getattr(model, 'model', None) or model


def attention_modules(model):
    vit = vit_of(model)
    blocks = vit.layers if hasattr(vit, 'layers') else vit.blocks
    return [block.attn for block in blocks]


def num_prefix(family):
    return 2 if family == 'deit_distilled' else 1


# --------------------------------------------------------------------------- the reference
def record(model, inputs):
    """One forward with the maps recorded (the engine's recorder: checked against qkv below)."""
    with AttentionRecorder(model) as rec:
        logits = plain_logits(model, inputs)
    return logits, list(rec.maps)


def reference_rollout(model, inputs, patch, prefix, last_only=False):
    """R = prod_l (0.5 I + 0.5 mean_heads A_l) (last block on the left), class-token row; or raw."""
    _, maps = record(model, inputs)
    batch, tokens = inputs.shape[0], maps[0].shape[-1]
    if last_only:
        relevance = maps[-1].mean(dim=1)
    else:
        eye = torch.eye(tokens).expand(batch, tokens, tokens)
        relevance = eye
        for attn in maps:
            relevance = torch.bmm(0.5 * eye + 0.5 * attn.mean(dim=1), relevance)
    relevance = relevance[:, 0, prefix:].reshape(batch, 1, inputs.shape[-2] // patch,
                                                 inputs.shape[-1] // patch)
    relevance = F.interpolate(relevance, scale_factor=patch, mode='bilinear')
    flat = relevance.flatten(1)
    low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - low) / (high - low)).view_as(relevance)


def forward_with_hooks(model, inputs, handles):
    """The model's ordinary forward (no recorder, no grad) with temporary hooks, removed after."""
    try:
        with torch.no_grad():
            plain_logits(model, inputs)
    finally:
        for handle in handles:
            handle.remove()


def true_attention(model, inputs):
    """softmax(q k^T d^-0.5) recomputed from the qkv projection's output (fused forward, no recorder)."""
    outputs = []
    modules = attention_modules(model)
    handles = [m.qkv.register_forward_hook(lambda mod, a, out: outputs.append(out)) for m in modules]
    forward_with_hooks(model, inputs, handles)
    probs = []
    for module, qkv in zip(modules, outputs):
        heads = module.num_heads
        batch, tokens, _ = qkv.shape
        q, k, _ = qkv.reshape(batch, tokens, 3, heads, -1).permute(2, 0, 3, 1, 4)
        probs.append(((q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5).softmax(dim=-1))
    return probs


FAMILIES = ['vit', 'deit_distilled', 'deit3', 'timm', 'timm_classifier']
SIZES = [  # (height, width, patch)
    (32, 32, 4),
    (64, 64, 8),
    (32, 48, 4),
    (64, 40, 8),
]


# --------------------------------------------------------------------------- parity
@pytest.mark.parametrize('height,width,patch', SIZES, ids=[f'{h}x{w}p{p}' for h, w, p in SIZES])
@pytest.mark.parametrize('family', FAMILIES)
def test_gae_matches_reference_loop(tiny_model, family, height, width, patch):
    model = tiny_model(family, img_size=height, patch=patch)
    torch.manual_seed(1)
    inputs = torch.randn(3, 3, height, width)

    # The maps the reference uses are the true attention probabilities of the ordinary forward.
    _, maps = record(model, inputs)
    for recorded, truth in zip(maps, true_attention(model, inputs)):
        torch.testing.assert_close(recorded.detach(), truth, atol=1e-6, rtol=1e-5)

    expected, expected_logits = reference_gae(model, inputs)
    relevance, logits = gae_relevance(model, inputs)
    assert relevance.shape == (3, 1, height, width)
    assert relevance.dtype == torch.float32
    assert torch.isfinite(expected).all(), 'reference map is degenerate: the test would be vacuous'
    assert (expected.flatten(1).amax(1) == 1).all()
    torch.testing.assert_close(relevance.detach(), expected.detach(), atol=1e-5, rtol=0)
    torch.testing.assert_close(logits.detach(), expected_logits.detach(), atol=1e-5, rtol=1e-5)
    assert relevance.amin() >= 0 and relevance.amax() <= 1


@pytest.mark.parametrize('family', FAMILIES)
def test_raw_and_grid_outputs_match_reference(tiny_model, family):
    """normalize=False: the reference's map before min-max; upsample=False: the (B, 1, h, w) grid."""
    height, width, patch = 32, 48, 4
    model = tiny_model(family, img_size=height, patch=patch)
    inputs = torch.randn(2, 3, height, width)
    prefix = num_prefix(family)

    raw_expected, _ = reference_gae(model, inputs, None, normalize=False)
    raw, _ = gae_relevance(model, inputs, normalize=False)
    torch.testing.assert_close(raw.detach(), raw_expected.detach(), atol=1e-6, rtol=1e-5)
    assert raw.amax() > 0 and not torch.allclose(raw.flatten(1).amax(1), torch.ones(2)), \
        'normalize=False must not min-max'

    grid_expected, _ = reference_gae(model, inputs, None, normalize=False,
                                     upsample=False)
    grid, _ = gae_relevance(model, inputs, normalize=False, upsample=False)
    assert grid.shape == (2, 1, height // patch, width // patch)
    torch.testing.assert_close(grid.detach(), grid_expected.detach(), atol=1e-6, rtol=1e-5)

    grid_normed, _ = gae_relevance(model, inputs, upsample=False)
    flat = grid_expected.flatten(1)
    low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    torch.testing.assert_close(grid_normed.detach(),
                               ((flat - low) / (high - low)).view_as(grid_expected).detach(),
                               atol=1e-5, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device on this machine')
@pytest.mark.parametrize('family', FAMILIES)
def test_gae_matches_reference_loop_on_cuda(tiny_model, family):
    model = tiny_model(family, img_size=32, patch=4).cuda()
    inputs = torch.randn(2, 3, 32, 48, device='cuda')
    # TF32 matmuls would make both sides approximate in different ways.
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        expected, expected_logits = reference_gae(model, inputs)
        relevance, logits = gae_relevance(model, inputs)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    assert relevance.device.type == 'cuda'
    torch.testing.assert_close(relevance.detach(), expected.detach(), atol=1e-5, rtol=0)
    torch.testing.assert_close(logits.detach(), plain_logits(model, inputs).detach(), atol=1e-5,
                               rtol=1e-5)
    torch.testing.assert_close(logits.detach(), expected_logits.detach(), atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- targets
@pytest.mark.parametrize('family', ['vit', 'timm'])
def test_targets_none_explains_argmax_and_explicit_targets_change_the_map(tiny_model, family):
    model = tiny_model(family)
    torch.manual_seed(3)
    inputs = torch.randn(4, 3, 32, 32)
    top1 = plain_logits(model, inputs).argmax(dim=1)

    default, _ = gae_relevance(model, inputs)
    explicit_top1, _ = gae_relevance(model, inputs, top1)
    torch.testing.assert_close(default, explicit_top1, atol=1e-6, rtol=0)

    others = (top1 + 1 + torch.arange(4)) % NUM_CLASSES  # never the top-1
    assert (others != top1).all()
    other_maps, _ = gae_relevance(model, inputs, others)
    expected, _ = reference_gae(model, inputs, others)
    torch.testing.assert_close(other_maps.detach(), expected.detach(), atol=1e-5, rtol=0)
    per_sample_change = (other_maps - default).abs().flatten(1).amax(dim=1)
    assert (per_sample_change > 1e-2).all(), per_sample_change


# --------------------------------------------------------------------------- gradient path
def _grad_is_zero(param):
    return param.grad is None or torch.count_nonzero(param.grad) == 0


def _grad_is_nonzero(param):
    return param.grad is not None and torch.count_nonzero(param.grad) > 0


def _param_groups(model, family):
    """(must_be_zero, must_be_nonzero) parameter dicts and the last block's qkv: with a constant
    gradient factor (docs/faithfulness.md#gradient-constant) only the attention path is reached."""
    vit = vit_of(model)
    if family == 'vit':
        blocks, last = vit.layers, vit.layers[-1]
        last_only = {'last.attn.proj': last.attn.proj, 'last.ffn': last.ffn, 'last.ln2': last.ln2,
                     'final_norm': vit.ln1, 'head': model.head}
        earlier = {'first.attn.proj': blocks[0].attn.proj, 'first.ffn': blocks[0].ffn,
                   'first.ln2': blocks[0].ln2, 'last.ln1': last.ln1,
                   'patch_embed': vit.patch_embed}
        extra_tokens = {'cls_token': vit.cls_token, 'pos_embed': vit.pos_embed}
    else:
        blocks, last = vit.blocks, vit.blocks[-1]
        last_only = {'last.attn.proj': last.attn.proj, 'last.mlp': last.mlp,
                     'last.norm2': last.norm2, 'final_norm': vit.norm, 'head': vit.head}
        earlier = {'first.attn.proj': blocks[0].attn.proj, 'first.mlp': blocks[0].mlp,
                   'first.norm2': blocks[0].norm2, 'last.norm1': last.norm1,
                   'patch_embed': vit.patch_embed}
        extra_tokens = {'cls_token': vit.cls_token, 'pos_embed': vit.pos_embed}
    return last_only, earlier, extra_tokens, last.attn.qkv, blocks[0].attn.qkv


@pytest.mark.parametrize('family', ['vit', 'timm'])
def test_gradient_reaches_exactly_the_attention_path(tiny_model, family):
    model = tiny_model(family, depth=3)
    inputs = torch.randn(2, 3, 32, 32)
    last_only, earlier, extra_tokens, last_qkv, first_qkv = _param_groups(model, family)

    model.zero_grad(set_to_none=True)
    relevance, _ = gae_relevance(model, inputs)  # create_graph=False: G is a constant
    assert relevance.requires_grad
    relevance.square().mean().backward()

    for name, module in last_only.items():
        for pname, param in module.named_parameters():
            assert _grad_is_zero(param), f'{name}.{pname} got relevance gradient'
    for name, module in earlier.items():
        assert any(_grad_is_nonzero(p) for p in module.parameters()), f'{name} got no gradient'
    for name, param in extra_tokens.items():
        assert _grad_is_nonzero(param), f'{name} got no gradient'

    dim = last_qkv.in_features
    weight_grad, bias_grad = last_qkv.weight.grad, last_qkv.bias.grad
    assert torch.count_nonzero(weight_grad[2 * dim:]) == 0, 'v-third of the last qkv weight'
    assert torch.count_nonzero(bias_grad[2 * dim:]) == 0, 'v-third of the last qkv bias'
    assert torch.count_nonzero(weight_grad[:dim]) > 0, 'q-third of the last qkv weight'
    assert torch.count_nonzero(weight_grad[dim:2 * dim]) > 0, 'k-third of the last qkv weight'
    assert torch.count_nonzero(first_qkv.weight.grad[2 * dim:]) > 0, 'v-third of an earlier block'

    # Second order: the gradient factor is differentiable, so the head is reached.
    model.zero_grad(set_to_none=True)
    relevance, _ = gae_relevance(model, inputs, create_graph=True)
    relevance.square().mean().backward()
    assert any(_grad_is_nonzero(p) for p in last_only['head'].parameters()), \
        'create_graph=True must reach the head'


def test_create_graph_does_not_change_the_values(tiny_model):
    model = tiny_model('vit')
    inputs = torch.randn(2, 3, 32, 32)
    first, _ = gae_relevance(model, inputs)
    second, _ = gae_relevance(model, inputs, create_graph=True)
    torch.testing.assert_close(first, second, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------- batch independence
@pytest.mark.parametrize('family', ['vit', 'deit_distilled', 'timm'])
def test_relevance_of_a_sample_ignores_the_rest_of_the_batch(tiny_model, family):
    model = tiny_model(family)
    torch.manual_seed(5)
    inputs = torch.randn(3, 3, 32, 32)
    changed = inputs.clone()
    changed[1:] = torch.randn(2, 3, 32, 32) * 3
    alone = inputs[:1]

    first, _ = gae_relevance(model, inputs)
    second, _ = gae_relevance(model, changed)
    single, _ = gae_relevance(model, alone)
    torch.testing.assert_close(first[0], second[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(first[0], single[0], atol=1e-6, rtol=0)
    assert not torch.allclose(first[1], second[1], atol=1e-3), 'the changed samples did change'

    # Also with explicit per-sample targets.
    targets = torch.tensor([2, 0, 1])
    first, _ = gae_relevance(model, inputs, targets)
    second, _ = gae_relevance(model, changed, torch.tensor([2, 5, 6]))
    torch.testing.assert_close(first[0], second[0], atol=1e-6, rtol=0)


# --------------------------------------------------------------------------- side effects
def _fused_state(model, family):
    if family in ('timm', 'timm_classifier'):
        return [m.__dict__.get('fused_attn', 'absent') for m in attention_modules(model)]
    return [m.__dict__.get('scaled_dot_product_attention', 'absent')
            for m in attention_modules(model)]


def _all_hooks(model):
    return [(name, kind) for name, module in model.named_modules()
            for kind in ('_forward_hooks', '_forward_pre_hooks', '_backward_hooks')
            if getattr(module, kind)]


@pytest.mark.parametrize('explain', [gae_relevance, attention_rollout, raw_attention])
@pytest.mark.parametrize('family', FAMILIES)
def test_logits_are_the_normal_forward_and_the_model_is_restored(tiny_model, family, explain):
    model = tiny_model(family)
    inputs = torch.randn(2, 3, 32, 32)
    before_state = _fused_state(model, family)
    with torch.no_grad():
        before = plain_logits(model, inputs)

    _, logits = explain(model, inputs)
    torch.testing.assert_close(logits.detach(), before, atol=1e-5, rtol=1e-5)

    assert _fused_state(model, family) == before_state
    if family in ('timm', 'timm_classifier'):
        assert all(m.fused_attn == before_state[0] for m in attention_modules(model))
    else:
        import torch.nn.functional as functional
        assert all(m.scaled_dot_product_attention is functional.scaled_dot_product_attention
                   for m in attention_modules(model))
    assert _all_hooks(model) == []
    assert not model.training
    with torch.no_grad():
        after = plain_logits(model, inputs)
    torch.testing.assert_close(after, before, atol=0, rtol=0)


def test_model_is_restored_after_an_error_inside(tiny_model):
    model = tiny_model('vit')
    state = _fused_state(model, 'vit')
    with pytest.raises(ValueError):
        gae_relevance(model, torch.randn(1, 3, 30, 30))
    assert _fused_state(model, 'vit') == state
    assert _all_hooks(model) == []


# --------------------------------------------------------------------------- no_grad / modes
@pytest.mark.parametrize('train_mode', [False, True], ids=['eval', 'train'])
@pytest.mark.parametrize('family', ['vit', 'deit_distilled', 'timm', 'timm_classifier'])
def test_works_under_no_grad_and_returns_detached(tiny_model, family, train_mode):
    model = tiny_model(family).train(train_mode)
    inputs = torch.randn(2, 3, 32, 32)
    with_grad, logits_grad = gae_relevance(model, inputs)
    assert with_grad.requires_grad
    with torch.no_grad():
        relevance, logits = gae_relevance(model, inputs)
        assert not torch.is_grad_enabled()
    assert not relevance.requires_grad and relevance.grad_fn is None
    assert not logits.requires_grad and logits.grad_fn is None
    torch.testing.assert_close(relevance, with_grad.detach(), atol=1e-6, rtol=0)
    torch.testing.assert_close(logits, logits_grad.detach(), atol=1e-6, rtol=0)
    assert model.training == train_mode
    assert all(p.grad is None for p in model.parameters()), 'the engine must not touch .grad'


def test_frozen_parameters_still_get_a_relevance_map(tiny_model):
    """Frozen stages (mmpretrain ``frozen_stages``) or a fully frozen copy: G_l is still defined.

    With everything before a block frozen, its attention map would not require grad and
    ``torch.autograd.grad`` over all maps would raise; the recorder then lets the input carry
    the graph, and the map equals the unfrozen model's.
    """
    model = tiny_model('vit', frozen_stages=1)
    inputs = torch.randn(2, 3, 32, 32)
    expected_model = tiny_model('vit')  # same seed: same weights, nothing frozen
    expected, _ = gae_relevance(expected_model, inputs)
    relevance, _ = gae_relevance(model, inputs)
    torch.testing.assert_close(relevance.detach(), expected.detach(), atol=1e-5, rtol=0)

    model.requires_grad_(False)
    relevance, _ = gae_relevance(model, inputs)
    torch.testing.assert_close(relevance.detach(), expected.detach(), atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- degenerate inputs
@pytest.mark.parametrize('family', ['vit', 'timm'])
def test_zero_head_gives_finite_zero_relevance(tiny_model, family):
    model = tiny_model(family)
    for param in model.head.parameters():  # mmpretrain VisionTransformerClsHead / timm Linear
        torch.nn.init.zeros_(param)
    inputs = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.count_nonzero(plain_logits(model, inputs)) == 0  # the premise: no signal
    for normalize in (True, False):
        relevance, _ = gae_relevance(model, inputs, normalize=normalize)
        assert torch.isfinite(relevance).all()
        assert torch.count_nonzero(relevance) == 0
    relevance, _ = gae_relevance(model, inputs)
    relevance.sum().backward()  # a flat map must not poison the gradient either
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize('family', ['vit', 'deit3', 'timm'])
def test_constant_image_gives_finite_relevance_in_unit_range(tiny_model, family):
    model = tiny_model(family)
    for value in (0.0, 0.7):
        relevance, logits = gae_relevance(model, torch.full((2, 3, 32, 32), value))
        assert torch.isfinite(relevance).all() and torch.isfinite(logits).all()
        assert relevance.amin() >= 0 and relevance.amax() <= 1


def test_non_vit_models_get_a_type_error_naming_what_is_supported():
    torch.manual_seed(0)
    resnet = MODELS.build(dict(
        type='ImageClassifier', backbone=dict(type='ResNet', depth=18),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=NUM_CLASSES, in_channels=512)))
    cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(8, NUM_CLASSES))
    inputs = torch.randn(1, 3, 32, 32)
    for model, name in ((resnet, 'ResNet'), (cnn, 'Sequential')):
        for explain in (gae_relevance, attention_rollout, raw_attention):
            with pytest.raises(TypeError) as info:
                explain(model, inputs)
            message = str(info.value)
            assert name in message
            assert 'VisionTransformer' in message and 'timm' in message and 'Supported' in message


@pytest.mark.parametrize('family', ['vit', 'deit3', 'timm', 'timm_classifier'])
def test_input_not_divisible_by_patch_is_a_value_error_naming_the_sizes(tiny_model, family):
    """Our check runs before the patch embedding (a pre-hook), so timm's own AssertionError
    about the input size never pre-empts it."""
    model = tiny_model(family, img_size=32, patch=4)
    with pytest.raises(ValueError) as info:
        gae_relevance(model, torch.randn(1, 3, 30, 34))
    message = str(info.value)
    assert '30x34' in message and '4x4' in message


# --------------------------------------------------------------------------- rollout / raw
def test_rollout_and_raw_attention_have_the_gae_signature_and_shapes(tiny_model):
    params = lambda fn: [p for p in inspect.signature(fn).parameters.values()  # noqa: E731
                         if p.name != 'create_graph']
    assert params(attention_rollout) == params(gae_relevance)
    assert params(raw_attention) == params(gae_relevance)

    model = tiny_model('vit')
    inputs = torch.randn(2, 3, 32, 48)
    for explain in (gae_relevance, attention_rollout, raw_attention):
        relevance, logits = explain(model, inputs)
        assert relevance.shape == (2, 1, 32, 48) and logits.shape == (2, NUM_CLASSES)
        assert relevance.amin() >= 0 and relevance.amax() <= 1
        grid, _ = explain(model, inputs, None, normalize=False, upsample=False)
        assert grid.shape == (2, 1, 8, 12)
        with torch.no_grad():
            detached, _ = explain(model, inputs, torch.tensor([1, 2]))
        assert not detached.requires_grad


@pytest.mark.parametrize('family', ['vit', 'deit_distilled', 'timm'])
def test_rollout_and_raw_attention_match_simple_references(tiny_model, family):
    model = tiny_model(family, depth=3)
    # Freshly initialised attention is nearly uniform (rollout range ~1e-4 of its mean for timm), and a
    # min-max of a flat map amplifies float noise: sharpen the attention so the comparison means something.
    torch.manual_seed(7)
    for module in attention_modules(model):
        torch.nn.init.normal_(module.qkv.weight, std=0.3)
    inputs = torch.randn(2, 3, 32, 48)
    prefix = num_prefix(family)

    grid, _ = attention_rollout(model, inputs, normalize=False, upsample=False)
    _, maps = record(model, inputs)
    tokens = maps[0].shape[-1]
    product = torch.eye(tokens).expand(2, tokens, tokens)
    for attn in maps:
        product = torch.bmm(0.5 * torch.eye(tokens) + 0.5 * attn.mean(dim=1), product)
    torch.testing.assert_close(grid.detach(), product[:, 0, prefix:].reshape(2, 1, 8, 12).detach(),
                               atol=1e-7, rtol=1e-5)

    rollout, _ = attention_rollout(model, inputs)
    torch.testing.assert_close(rollout.detach(), reference_rollout(model, inputs, 4, prefix).detach(),
                               atol=1e-5, rtol=0)
    raw, _ = raw_attention(model, inputs)
    torch.testing.assert_close(raw.detach(),
                               reference_rollout(model, inputs, 4, prefix, last_only=True).detach(),
                               atol=1e-5, rtol=0)

    # Class-agnostic: the targets are accepted and ignored, and a warning says so.
    for explain, plain in ((attention_rollout, rollout), (raw_attention, raw)):
        with pytest.warns(UserWarning, match=f'{explain.__name__} is class-agnostic: the targets '
                                             'passed are ignored'):
            other, _ = explain(model, inputs, torch.tensor([3, 4]))
        torch.testing.assert_close(other, plain, atol=0, rtol=0)
        with warnings.catch_warnings():
            warnings.simplefilter('error')  # no targets: nothing to warn about
            explain(model, inputs)
    # ...and different from GAE (otherwise offering both would be pointless).
    gae, _ = gae_relevance(model, inputs)
    assert not torch.allclose(gae, rollout, atol=1e-2)


def test_pixel_values_instead_of_normalised_images_are_warned_about(tiny_model):
    model = tiny_model('vit')
    pixels = torch.randint(0, 256, (2, 3, 32, 32)).float()
    with pytest.warns(UserWarning, match=r'inputs reach \|x\| = 25\d.*0-255 pixel values.*'
                                         r'data_preprocessor'):
        gae_relevance(model, pixels)
    normalised = (pixels - 127.5) / 127.5
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        gae_relevance(model, normalised)
        gae_relevance(model, torch.randn(2, 3, 32, 32) * 2.5)  # ImageNet-normalised range


# --------------------------------------------------------------------------- explainer lookup
def test_get_explainer_names_every_method_and_refuses_others():
    from robustvit_mm.relevance import get_explainer
    assert get_explainer('gae') is gae_relevance
    assert get_explainer('attention_rollout') is attention_rollout
    assert get_explainer('raw_attention') is raw_attention
    with pytest.raises(ValueError, match=r"'gradcam'.*\['gae', 'attention_rollout', 'raw_attention'\]"):
        get_explainer('gradcam')
    # one name per explainer: the short names once taught are refused, naming the canonical one
    for old, canonical in (('rollout', 'attention_rollout'), ('raw', 'raw_attention')):
        with pytest.raises(ValueError, match=f"'{old}' is called '{canonical}'"):
            get_explainer(old)


# --------------------------------------------------------------------------- every attention family
NEW_FAMILIES = ['beit', 'beit_cls', 'eva02', 'timm_reg', 'timm_beit', 'timm_eva', 'timm_eva_reg']


def value_and_output(model, inputs):
    """Per block of the model's ordinary forward (no recorder): v (from the attention module's
    input and its weights) and what the attention fed to its output projection, per head."""
    inputs_seen, mixed = [], []
    handles = []
    for module in attention_modules(model):
        handles.append(module.register_forward_pre_hook(lambda m, a: inputs_seen.append(a[0])))
        handles.append(module.proj.register_forward_pre_hook(lambda m, a: mixed.append(a[0])))
    forward_with_hooks(model, inputs, handles)
    pairs = []
    for module, x, out in zip(attention_modules(model), inputs_seen, mixed):
        dim, heads = x.shape[-1], module.num_heads
        bias = getattr(module, 'v_bias', None)
        if bias is None and module.qkv.bias is not None:
            bias = module.qkv.bias[2 * dim:]
        value = F.linear(x, module.qkv.weight[2 * dim:], bias)
        split = lambda t: t.reshape(*t.shape[:2], heads, -1).transpose(1, 2).double()  # noqa: E731
        pairs.append((split(value), split(out)))
    return pairs


@pytest.mark.parametrize('family', NEW_FAMILIES + ['vit', 'deit3', 'timm'])
def test_recorded_maps_are_what_the_ordinary_forward_multiplies_v_by(tiny_model, family):
    """Independent of how a family forms its scores (relative position bias, RoPE, registers):
    with head_dim >= tokens, v has full row rank, so the attention is the unique A with
    A v = (what the fused forward fed to proj), i.e. (proj input) v^+."""
    model = tiny_model(family, img_size=12, patch=4)  # 9 patches + prefix <= 16 = head_dim
    sharpen_qkv(model)
    with torch.no_grad():  # a zero-initialised class token (BEiT) has v = 0: rank deficient
        vit_of(model).cls_token.normal_()
    inputs = torch.randn(2, 3, 12, 12)
    with AttentionRecorder(model) as recorder:
        plain_logits(model, inputs)
    pairs = value_and_output(model, inputs)
    assert len(recorder.maps) == len(pairs) == 2
    for recorded, (value, out) in zip(recorder.maps, pairs):
        assert value.shape[-2] <= value.shape[-1], 'the test needs head_dim >= tokens'
        truth = out @ torch.linalg.pinv(value)
        torch.testing.assert_close(recorded.detach().double(), truth, atol=1e-4, rtol=1e-4)
        assert recorded.amax() > 2.0 / recorded.shape[-1], 'a uniform map would make this weak'


def sharpen_qkv(model, std=0.3):
    """Near-uniform fresh attention (and, with a patch-average head, relevance that varies by ~1e-4
    of its mean) would make the comparisons weak: sharper q/k/v weights."""
    generator = torch.Generator().manual_seed(7)
    for module in attention_modules(model):
        with torch.no_grad():
            module.qkv.weight.copy_(torch.randn(module.qkv.weight.shape, generator=generator) * std)


@pytest.mark.parametrize('family', NEW_FAMILIES)
def test_gae_matches_reference_loop_for_every_family(tiny_model, family):
    model = tiny_model(family, img_size=32, patch=4)
    sharpen_qkv(model)
    torch.manual_seed(1)
    inputs = torch.randn(3, 3, 32, 32)
    # The reference in float64: what is measured is the engine's own float32 error.
    expected, expected_logits = reference_gae(model, inputs, dtype=torch.float64)
    relevance, logits = gae_relevance(model, inputs)
    assert torch.isfinite(expected).all(), 'reference map is degenerate: the test would be vacuous'
    difference = (relevance - expected).abs().max().item()
    print(f'{family}: max |gae_relevance - reference| = {difference:.1e}')
    torch.testing.assert_close(relevance.detach(), expected.detach(), atol=1e-5, rtol=0)
    torch.testing.assert_close(logits.detach(), expected_logits.detach(), atol=1e-5, rtol=1e-5)
    raw, _ = gae_relevance(model, inputs, normalize=False, upsample=False)
    raw_expected, _ = reference_gae(model, inputs, normalize=False, upsample=False,
                                    dtype=torch.float64)
    torch.testing.assert_close(raw.detach(), raw_expected.detach(), atol=1e-6, rtol=1e-5)
    with torch.no_grad():  # the recorded forward is the ordinary forward
        torch.testing.assert_close(logits.detach(), plain_logits(model, inputs), atol=1e-5,
                                   rtol=1e-5)


@pytest.mark.parametrize('family', NEW_FAMILIES)
def test_new_families_are_restored_exactly(tiny_model, family):
    model = tiny_model(family)
    fused = [m.__dict__.get('fused_attn', 'absent') for m in attention_modules(model)]
    with torch.no_grad():
        before = plain_logits(model, torch.ones(1, 3, 32, 32))
    gae_relevance(model, torch.ones(1, 3, 32, 32))
    assert [m.__dict__.get('fused_attn', 'absent') for m in attention_modules(model)] == fused
    assert _all_hooks(model) == []
    with torch.no_grad():
        torch.testing.assert_close(plain_logits(model, torch.ones(1, 3, 32, 32)), before,
                                   atol=0, rtol=0)


def test_patch_average_heads_read_the_mean_patch_row(tiny_model):
    """BEiT as fine-tuned pools the patch tokens: its class token's output never reaches the head,
    so the class token's row would be the wrong one; the engine reads the patches' mean row."""
    from robustvit_mm.relevance.capture import readout
    avg, cls = tiny_model('beit'), tiny_model('beit_cls')
    assert readout(avg.backbone, 'mmpretrain') == 'avg'
    assert readout(cls.backbone, 'mmpretrain') == 'token'


def test_a_block_that_records_nothing_is_an_error_at_once(tiny_model):
    model = tiny_model('timm', depth=3)
    with pytest.raises(RuntimeError, match=r'VisionTransformer recorded no attention map in '
                                           r'block\(s\) \[1\] of 3'):
        with AttentionRecorder(model):
            model.blocks[1].attn.fused_attn = True  # as if this block computed attention unseen
            plain_logits(model, torch.randn(1, 3, 32, 32))


def _unsupported_models():
    import timm
    arch = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)
    head = dict(type='LinearClsHead', num_classes=NUM_CLASSES, in_channels=32)
    return [
        ('RevVisionTransformer', 'reversible',
         dict(type='RevVisionTransformer', arch=arch, img_size=32, patch_size=4)),
        ('SwinTransformer', 'window attention',
         dict(type='SwinTransformer', arch=dict(embed_dims=32, depths=[1, 1, 1, 1],
                                                num_heads=[1, 1, 1, 1]), img_size=32)),
        ('no class token', 'class token',
         timm.create_model('vit_tiny_patch16_224', img_size=32, patch_size=4, depth=1,
                           class_token=False, global_pool='avg', num_classes=NUM_CLASSES)),
        ('attention pooling', 'global_pool="map"',
         timm.create_model('vit_tiny_patch16_224', img_size=32, patch_size=4, depth=1,
                           global_pool='map', num_classes=NUM_CLASSES)),
    ], head


@pytest.mark.parametrize('index', range(4))
def test_unsupported_models_get_a_type_error_saying_why_at_build_and_first_call(index):
    models, head = _unsupported_models()
    name, reason, model = models[index]
    if isinstance(model, dict):  # an mmpretrain backbone: build the relevance-guided classifier
        with pytest.raises(TypeError, match=reason):
            MODELS.build(dict(type='RelevanceGuidedClassifier', backbone=model, neck=dict(
                type='GlobalAveragePooling'), head=head))
        model = MODELS.build(dict(type='ImageClassifier', backbone=model,
                                  neck=dict(type='GlobalAveragePooling'), head=head))
    with pytest.raises(TypeError, match=reason):
        gae_relevance(model, torch.randn(1, 3, 32, 32))


def test_gradient_checkpointing_is_refused_saying_why(tiny_model):
    """Checkpointed blocks are recomputed in the backward pass, after the recorder has put the
    fused path back: autograd would fail with a checkpoint metadata error instead."""
    model = tiny_model('timm').train()
    gae_relevance(model, torch.randn(1, 3, 32, 32))  # fine without
    model.set_grad_checkpointing(True)
    with pytest.raises(TypeError, match='gradient checkpointing.*set_grad_checkpointing'):
        gae_relevance(model, torch.randn(1, 3, 32, 32))


@pytest.mark.parametrize('kwargs, reason', [
    (dict(model_name='vit_tiny_patch16_224', class_token=False, global_pool='avg'), 'class token'),
    (dict(model_name='swin_tiny_patch4_window7_224', window_size=2, embed_dim=24,
          depths=(1, 1), num_heads=(1, 1)), 'window attention'),
])
def test_relevance_guided_timm_classifier_refuses_unsupported_models_at_build(kwargs, reason):
    cfg = dict(type='RelevanceGuidedTimmClassifier', pretrained=False, img_size=32, num_classes=5,
               **kwargs)
    if 'depth' not in kwargs and 'depths' not in kwargs:
        cfg.update(patch_size=4, depth=1)
    with pytest.raises(TypeError, match=reason):
        MODELS.build(cfg)


# --------------------------------------------------------------------------- bad arguments
# Each is named in a clear error before the forward where it can be known then (the number of
# classes only after it); before, torch failed deep inside or a wrong map came back quietly.
EXPLAIN = [gae_relevance, attention_rollout, raw_attention]


@pytest.mark.parametrize('explain', EXPLAIN, ids=lambda f: f.__name__)
def test_targets_out_of_range_name_the_indices_and_num_classes(tiny_model, explain):
    model = tiny_model('vit')
    inputs = torch.randn(3, 3, 32, 32)
    with pytest.raises(ValueError, match=r'targets\[2\]=9 out of range.*num_classes=7'):
        explain(model, inputs, torch.tensor([0, 1, 9]))  # was: gather's "index 9 is out of bounds"
    with pytest.raises(ValueError, match=r'targets\[0\]=-1, targets\[1\]=7 out of range'):
        explain(model, inputs, [-1, 7, 0])


@pytest.mark.parametrize('explain', EXPLAIN, ids=lambda f: f.__name__)
def test_targets_of_the_wrong_length_or_shape_name_b_and_the_length(tiny_model, explain):
    model = tiny_model('vit')
    inputs = torch.randn(3, 3, 32, 32)
    # 2 targets for 3 images: gather quietly explained the first two images only
    with pytest.raises(ValueError, match=r'B=3 images, targets has shape \(2,\) \(len 2\)'):
        explain(model, inputs, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r'B=3 images, targets has shape \(3, 1\)'):
        explain(model, inputs, torch.tensor([[0], [1], [2]]))
    with pytest.raises(ValueError, match=r'B=3 images, targets has shape \(4,\)'):
        explain(model, inputs, [0, 1, 2, 3])


@pytest.mark.parametrize('bad, dtype', [(torch.tensor([0., 1., 2.]), 'torch.float32'),
                                        (torch.tensor([True, False, True]), 'torch.bool'),
                                        ([0.0, 1.0, 2.0], 'torch.float32')])
def test_float_or_bool_targets_are_a_type_error_naming_the_dtype(tiny_model, bad, dtype):
    with pytest.raises(TypeError, match=f'integer tensor of class indices, got dtype {dtype}'):
        gae_relevance(tiny_model('vit'), torch.randn(3, 3, 32, 32), bad)
    with pytest.raises(TypeError, match='targets must be None, a .B,. integer tensor or a list'):
        gae_relevance(tiny_model('vit'), torch.randn(3, 3, 32, 32), 'cat')
    with pytest.raises(TypeError, match=r"class indices \(ints\), got \[0, 'a', 2\]"):
        gae_relevance(tiny_model('vit'), torch.randn(3, 3, 32, 32), [0, 'a', 2])


@pytest.mark.parametrize('family', ['vit', 'timm'])
def test_list_and_tuple_targets_equal_the_tensor_targets(tiny_model, family):
    import numpy as np
    model = tiny_model(family)
    inputs = torch.randn(3, 3, 32, 32)
    expected, _ = gae_relevance(model, inputs, torch.tensor([4, 0, 6]))
    auto, _ = gae_relevance(model, inputs)
    assert (expected - auto).abs().max() > 1e-3  # the targets matter: the check is not vacuous
    for targets in ([4, 0, 6], (4, 0, 6), np.array([4, 0, 6]), torch.tensor([4, 0, 6],
                                                                            dtype=torch.int32)):
        relevance, _ = gae_relevance(model, inputs, targets)
        torch.testing.assert_close(relevance, expected, atol=0, rtol=0)


@pytest.mark.parametrize('explain', EXPLAIN, ids=lambda f: f.__name__)
def test_non_finite_pixels_name_the_images(tiny_model, explain):
    """One NaN pixel made its image's whole map NaN, with no error."""
    model = tiny_model('vit')
    inputs = torch.randn(4, 3, 32, 32)
    inputs[2, 1, 5, 7] = float('nan')
    with pytest.raises(ValueError, match=r'^inputs\[2\] holds NaN/inf pixels'):
        explain(model, inputs)
    inputs[0, 0, 0, 0] = float('-inf')
    with pytest.raises(ValueError, match=r'^inputs\[0\], inputs\[2\] hold NaN/inf pixels'):
        explain(model, inputs)


@pytest.mark.parametrize('bad, what', [
    (torch.randn(3, 32, 32), r'got a \(3, 32, 32\) torch.float32 tensor'),
    (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), r'got a \(2, 3, 32, 32\) torch.uint8 tensor'),
    ([[0.0]], 'got a list'),
])
def test_inputs_that_are_not_a_4d_float_tensor_name_the_shape_and_dtype(tiny_model, bad, what):
    with pytest.raises(TypeError, match=r'inputs must be a \(B, C, H, W\) floating-point.*' + what):
        gae_relevance(tiny_model('vit'), bad)


@pytest.mark.parametrize('explain', EXPLAIN, ids=lambda f: f.__name__)
def test_inference_mode_is_refused_saying_to_call_outside_it(tiny_model, explain):
    model = tiny_model('vit')
    inputs = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        with pytest.raises(RuntimeError, match='needs autograd.*outside inference_mode'):
            explain(model, inputs)
        made_inside = torch.randn(2, 3, 32, 32)
    # an inference tensor used outside the mode (autograd cannot save it): works, same map
    relevance, _ = explain(model, made_inside)
    expected, _ = explain(model, made_inside.clone())
    torch.testing.assert_close(relevance, expected, atol=0, rtol=0)
    with torch.no_grad():  # no_grad, unlike inference_mode, is fine (see the no_grad test above)
        assert torch.isfinite(explain(model, inputs)[0]).all()


# --------------------------------------------------------------------------- stochastic forwards
@pytest.mark.parametrize('family, kwargs, layer', [
    ('vit', dict(drop_path_rate=0.1), 'DropPath p=0.1'),  # mmcv DropPath
    ('vit', dict(layer_cfgs=dict(attn_drop_rate=0.1)), 'MultiheadAttention p=0.1'),  # float rate
    ('vit', dict(drop_rate=0.2), 'Dropout p=0.2'),
    ('timm', dict(attn_drop_rate=0.1), 'attn.attn_drop (Dropout p=0.1)'),
    ('timm', dict(drop_path_rate=0.1), 'DropPath p=0.1'),  # timm DropPath
    ('timm_classifier', dict(drop_rate=0.1), 'model.head_drop (Dropout p=0.1)'),
])
def test_training_mode_with_dropout_warns_once_per_call(tiny_model, family, kwargs, layer):
    """Two calls gave maps ~0.9 apart with no word; now each call warns, naming the layers."""
    model = tiny_model(family, **kwargs).train()
    inputs = torch.randn(2, 3, 32, 32)
    with pytest.warns(UserWarning) as record:
        first, _ = gae_relevance(model, inputs)
        second, _ = gae_relevance(model, inputs)
    ours = [w for w in record if 'stochastic layers' in str(w.message)]
    assert len(ours) == 2  # once per call
    message = str(ours[0].message)
    assert layer in message and 'model.eval()' in message and 'training mode' in message
    assert ours[0].filename == __file__  # points at the caller's line
    assert (first - second).abs().max() > 0.05  # the premise: the map is random
    model.eval()  # the advice works: silent and deterministic
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        first, _ = gae_relevance(model, inputs)
        second, _ = gae_relevance(model, inputs)
    torch.testing.assert_close(first, second, atol=0, rtol=0)


@pytest.mark.parametrize('family', ['vit', 'deit3', 'timm', 'timm_classifier'])
def test_training_mode_with_zero_drop_rates_is_silent(tiny_relevance_model, family):
    """The RobustViT recipe trains in training mode with every drop rate 0: no warning there."""
    model = tiny_relevance_model(family)
    assert model.training
    assert any(isinstance(m, torch.nn.Dropout) for m in model.modules())  # p=0 layers exist
    inputs = torch.randn(2, 3, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        for explain in EXPLAIN:
            first, _ = explain(model, inputs)
            second, _ = explain(model, inputs)
            torch.testing.assert_close(first, second, atol=0, rtol=0)
