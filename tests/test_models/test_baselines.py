"""GradMask / RRR baselines (the paper's Appendix C; values: Appendix D, Tables 6-7) and the
loss-ablation configs.

- the penalties equal a hand computation (a linear model, where the input gradient is a weight row),
  GradMask's paper norm and released mean of squares both, by value and by gradient, and, on a tiny
  ViT, the same penalty computed from a plain forward of the model;
- each penalty sends a non-zero gradient to the weights (double backward through the explicit
  attention path), and none in ``reference_compat`` mode (the released, inert penalty,
  docs/faithfulness.md#baseline-penalty);
- val/test attach per-sample terms whose mean is the training value (the checkpoint-rule loss);
- every config in configs/baselines differs from its parent in exactly the keys it claims;
- every GradMask/RRR config trains for an epoch through the STOCK train.py on a generated
  ImageNet-S tree (slow).
"""
import functools
import glob
import json
import math
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmpretrain.registry import METRICS, MODELS
from mmpretrain.structures import DataSample
from torch import nn

import robustvit_mm  # noqa: F401  (registers)
from robustvit_mm.models.baselines import GradMaskLoss, RRRLoss
from robustvit_mm.models.losses import reverse_mask
from masked_samples import masked_samples
from stock_run_helpers import AUGMENTED_PIPELINES, REPO, save_pretrained, scalars

BASELINES = osp.join(REPO, 'configs', 'baselines')
EMBED, SIZE, PATCH, CLASSES = 32, 32, 8, 5
PENALTIES = ('GradMaskLoss', 'RRRLoss')
LOSS_NAME = dict(GradMaskLoss='loss_gradmask', RRRLoss='loss_rrr')


# ------------------------------------------------------------------------------ helpers
def build_classifier(penalty='GradMaskLoss', family='mmpretrain', **loss_kwargs):
    torch.manual_seed(0)
    saliency_loss = dict(type=penalty, **loss_kwargs)
    if family == 'timm':
        model = MODELS.build(dict(
            type='InputGradientGuidedTimmClassifier', model_name='vit_tiny_patch16_224',
            pretrained=False, img_size=SIZE, patch_size=PATCH, depth=2, embed_dim=EMBED,
            num_heads=2, num_classes=CLASSES,
            loss=dict(type='ConfidenceBoostingLoss', target='gt', loss_weight=0.2),
            saliency_loss=saliency_loss))
        nn.init.normal_(model.model.head.weight, std=0.5)
        return model
    model = MODELS.build(dict(
        type='InputGradientGuidedClassifier',
        backbone=dict(type='VisionTransformer', img_size=SIZE, patch_size=PATCH, drop_path_rate=0.,
                      arch=dict(embed_dims=EMBED, num_layers=2, num_heads=2,
                                feedforward_channels=2 * EMBED)),
        head=dict(type='ConfidenceBoostingHead', num_classes=CLASSES, in_channels=EMBED,
                  target='gt'),
        data_preprocessor=dict(type='ClsDataPreprocessor', mean=[127.5] * 3, std=[127.5] * 3),
        saliency_loss=saliency_loss))
    nn.init.normal_(model.head.layers.head.weight, std=0.5)  # init_weights() zeroes it
    return model


def samples(batch, size=SIZE):
    return masked_samples(batch, size, CLASSES)


def mask_tensor(data):
    return torch.stack([torch.from_numpy(d.fg_mask) for d in data])[:, None]


def labels_of(data):
    return torch.cat([d.gt_label for d in data])


def grads(model):
    return {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p)
            for n, p in model.named_parameters()}


# ------------------------------------------------------------------------------ by hand
class LinearModel(nn.Module):
    """z = W vec(x) + b: d z_c / d x = W_c, so every penalty has a closed form."""

    def __init__(self, classes=3, shape=(3, 4, 4)):
        super().__init__()
        torch.manual_seed(0)
        self.shape = shape
        self.fc = nn.Linear(int(np.prod(shape)), classes).double()

    def forward(self, x):
        return self.fc(x.flatten(1))


def hand_case():
    model = LinearModel()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([2, 0])
    mask = torch.zeros(2, 1, 4, 4, dtype=torch.float64)
    mask[0, 0, 1:3, 1:3] = 1
    mask[1, 0, 0, :] = 1
    mask[1, 0, 1, 0] = 0.25  # fractional: the 'reference' rule keeps S~ = 0.25 there
    return model, x, labels, mask


def test_gradmask_equals_hand_computation():
    model, x, labels, mask = hand_case()
    W = model.fc.weight.detach().numpy().reshape(3, 3, 4, 4)
    m = mask.numpy()
    s_rev = np.where((m == 0) | (m == 1), 1 - m, m)  # the released three substitutions
    g = W[labels.numpy()]  # d z[b, y_b] / d x_b = W[y_b]
    # The paper's penalty (default): each image's L2 norm over 3*H*W, averaged over the batch.
    norms = np.sqrt(((g * s_rev) ** 2).reshape(2, -1).sum(1))
    paper = GradMaskLoss(loss_weight=50.0)
    assert paper.penalty == 'norm'
    assert paper(model(x), x, labels, mask).item() == pytest.approx(50.0 * norms.mean(), rel=1e-10)
    np.testing.assert_allclose(paper.per_sample(model(x), x, labels, mask).detach().numpy(),
                               50.0 * norms, rtol=1e-10)

    expected = 0.8 * np.mean((g * s_rev) ** 2)  # mean over B*3*H*W, S~ broadcast over channels
    loss = GradMaskLoss(penalty='mean_square')
    value = loss(model(x), x, labels, mask)
    assert value.item() == pytest.approx(expected, rel=1e-10)
    assert value.requires_grad  # create_graph: the penalty is a function of the weights
    assert loss.per_sample(model(x), x, labels, mask).mean().item() == pytest.approx(expected,
                                                                                    rel=1e-10)
    exact = GradMaskLoss(reverse_mask='exact', loss_weight=1.0, penalty='mean_square')(
        model(x), x, labels, mask)
    assert exact.item() == pytest.approx(np.mean((g * (1 - m)) ** 2), rel=1e-10)


def test_rrr_equals_hand_computation():
    model, x, labels, mask = hand_case()
    W = model.fc.weight.detach().numpy().reshape(3, -1)
    z = model(x).detach().numpy()
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    eps = 1e-11
    # d/dx_b sum_c log(p_bc + eps) = sum_c p_bc / (p_bc + eps) * (W_c - sum_k p_bk W_k)
    mean_w = p @ W
    g = np.stack([sum(p[b, c] / (p[b, c] + eps) * (W[c] - mean_w[b]) for c in range(3))
                  for b in range(2)]).reshape(2, 3, 4, 4)
    m = mask.numpy()
    s_rev = np.where((m == 0) | (m == 1), 1 - m, m)
    expected = 0.8 * np.sum((g * s_rev) ** 2)  # SUM reduction
    loss = RRRLoss()
    value = loss(model(x), x, labels, mask)
    assert value.item() == pytest.approx(expected, rel=1e-8)
    # per_sample: B x each image's sum, so that the batch mean is the batch loss
    per = loss.per_sample(model(x), x, labels, mask)
    assert per.mean().item() == pytest.approx(expected, rel=1e-8)
    assert per[0].item() == pytest.approx(0.8 * 2 * np.sum((g[0] * s_rev[0]) ** 2), rel=1e-8)


def test_penalty_gradient_to_the_weights_equals_hand_computation():
    # GradMask on a linear model: L = 0.8 * mean_{b,i} (W[y_b, i] S~_bi)^2, so
    # dL/dW[c, i] = 0.8 * 2 / N * W[c, i] * sum_{b: y_b = c} S~_bi^2.
    model, x, labels, mask = hand_case()
    GradMaskLoss(penalty='mean_square')(model(x), x, labels, mask).backward()
    W = model.fc.weight.detach().numpy()
    s2 = np.broadcast_to(reverse_mask(mask).numpy() ** 2, (2, 3, 4, 4)).reshape(2, -1)
    expected = np.zeros_like(W)
    for b, c in enumerate(labels.tolist()):
        expected[c] += 0.8 * 2 / s2.size * W[c] * s2[b]
    np.testing.assert_allclose(model.fc.weight.grad.numpy(), expected, rtol=1e-10, atol=1e-15)

    # The paper's norm: L = 0.8 / B * sum_b ||W[y_b] S~_b||, so
    # dL/dW[c, i] = 0.8 / B * sum_{b: y_b = c} W[c, i] S~_bi^2 / ||W[c] S~_b||.
    model.zero_grad()
    GradMaskLoss(penalty='norm')(model(x), x, labels, mask).backward()
    expected = np.zeros_like(W)
    for b, c in enumerate(labels.tolist()):
        expected[c] += 0.8 / 2 * W[c] * s2[b] / np.sqrt((W[c] ** 2 * s2[b]).sum())
    np.testing.assert_allclose(model.fc.weight.grad.numpy(), expected, rtol=1e-10, atol=1e-15)

    model.zero_grad()
    compat = GradMaskLoss(reference_compat=True)(model(x), x, labels, mask)
    assert not compat.requires_grad and compat.grad_fn is None  # the released inert penalty


def test_norm_penalty_of_an_all_foreground_batch_is_zero_with_zero_gradient():
    model, x, labels, mask = hand_case()
    loss = GradMaskLoss()(model(x), x, labels, torch.ones_like(mask))  # no background at all
    loss.backward()
    assert loss.item() == 0 and torch.isfinite(model.fc.weight.grad).all()
    assert model.fc.weight.grad.abs().sum() == 0


def test_penalty_options_and_errors():
    model, x, labels, mask = hand_case()
    ignore = torch.zeros_like(mask)
    ignore[:, :, 3] = 1  # last row: background pixels that ImageNet-S marks 'ignore'
    kept = GradMaskLoss()(model(x), x, labels, mask, ignore)
    dropped = GradMaskLoss(ignore_pixels='exclude')(model(x), x, labels, mask, ignore)
    assert dropped.item() < kept.item()
    with pytest.raises(ValueError, match='reverse_mask'):
        GradMaskLoss(reverse_mask='flip')
    with pytest.raises(ValueError, match='ignore_pixels'):
        RRRLoss(ignore_pixels='drop')
    with pytest.raises(ValueError, match='penalty'):
        GradMaskLoss(penalty='l1')
    assert RRRLoss().penalty == 'sum_square' and GradMaskLoss().penalty == 'norm'
    with pytest.raises(ValueError, match='foreground mask'):
        GradMaskLoss()(model(x), x, labels, mask[:, :, :2])
    x_plain = x.detach()
    with pytest.raises(ValueError, match='require grad'):
        GradMaskLoss()(model(x_plain), x_plain, labels, mask)


# ------------------------------------------------------------------------------ the classifier
@pytest.mark.parametrize('penalty', PENALTIES)
def test_classifier_penalty_matches_a_plain_forward_of_the_model(penalty):
    """The recorded (explicit-attention) forward gives the same input gradient as the model's
    ordinary forward; the classifier's terms are the loss modules applied to it."""
    model = build_classifier(penalty)
    attention = vars(model.backbone.layers[0].attn).get('scaled_dot_product_attention')
    inputs, data = torch.randn(3, 3, SIZE, SIZE), samples(3)
    losses = model.loss(inputs, data)
    assert set(losses) == {LOSS_NAME[penalty], 'loss_cls'}
    # the fused attention is back after the recorded (explicit-attention) forward
    assert vars(model.backbone.layers[0].attn).get('scaled_dot_product_attention') is attention

    x = inputs.clone().requires_grad_(True)
    logits = model(x, mode='tensor')  # fused attention, single backward only
    labels = labels_of(data)
    if penalty == 'GradMaskLoss':
        score = logits.gather(1, labels[:, None]).sum()
    else:
        score = torch.log(F.softmax(logits, 1) + 1e-11).sum()
    (g,) = torch.autograd.grad(score, x)
    masked = (g * reverse_mask(mask_tensor(data))).flatten(1)
    # GradMask: the paper's per-image norm (default); RRR: the sum of squares.
    expected = 0.8 * (masked.norm(dim=1).mean() if penalty == 'GradMaskLoss'
                      else masked.square().sum())
    assert losses[LOSS_NAME[penalty]].item() == pytest.approx(expected.item(), rel=1e-4)
    assert losses['loss_cls'].item() == pytest.approx(
        0.2 * F.cross_entropy(logits, labels).item(), rel=1e-5)  # GT-label CE


@pytest.mark.parametrize('family', ['mmpretrain', 'timm'])
@pytest.mark.parametrize('penalty', PENALTIES)
def test_each_penalty_reaches_the_weights_and_not_in_compat_mode(penalty, family):
    inputs, data = torch.randn(2, 3, SIZE, SIZE), samples(2)
    name = LOSS_NAME[penalty]

    model = build_classifier(penalty, family)
    losses = model.loss(inputs, data)
    assert losses[name].requires_grad
    losses[name].backward()  # the penalty alone: a double backward through the explicit attention
    g = grads(model)
    if family == 'timm':
        trained = ['model.patch_embed.proj.weight', 'model.blocks.0.attn.qkv.weight',
                   'model.blocks.1.mlp.fc2.weight', 'model.head.weight']
        assert model.model.blocks[0].attn.fused_attn  # restored
    else:
        trained = ['backbone.patch_embed.projection.weight', 'backbone.layers.0.attn.qkv.weight',
                   'backbone.layers.1.ffn.layers.1.weight', 'head.layers.head.weight']
    for key in trained:
        assert g[key].abs().sum() > 0, key

    # reference_compat: same value, no graph; the total's gradient is the CE's alone.
    compat = build_classifier(penalty, family, reference_compat=True)
    compat_losses = compat.loss(inputs, data)
    assert compat_losses[name].item() == pytest.approx(losses[name].item(), rel=1e-5)
    assert not compat_losses[name].requires_grad
    total, log_vars = compat.parse_losses(compat_losses)
    assert log_vars[name] == pytest.approx(losses[name].item(), rel=1e-5)  # still logged
    total.backward()
    with_penalty = grads(compat)
    ce_only = build_classifier(penalty, family, reference_compat=True)
    ce_only.loss(inputs, data)['loss_cls'].backward()
    for key, value in grads(ce_only).items():
        torch.testing.assert_close(with_penalty[key], value, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize('penalty', PENALTIES)
def test_predict_attaches_the_validation_loss_per_sample(penalty):
    model = build_classifier(penalty)
    inputs = torch.randn(3, 3, SIZE, SIZE)
    train_terms = model.loss(inputs, samples(3))
    model.eval()
    with torch.no_grad():  # as mmengine's ValLoop
        out = model.predict(inputs, samples(3))
    name = LOSS_NAME[penalty]
    terms = [d.relevance_losses for d in out]
    assert all(set(t) == {name, 'loss_cls'} for t in terms)
    for key in (name, 'loss_cls'):  # the mean over the batch is the training value
        assert np.mean([t[key] for t in terms]) == pytest.approx(train_terms[key].item(), rel=1e-4)
    assert out[0].pred_label is not None

    metric = METRICS.build(dict(type='RelevanceFinetuneMetric'))
    metric.process(None, out)
    result = metric.compute_metrics(metric.results)
    assert result['loss'] == pytest.approx(
        sum(train_terms[k].item() for k in (name, 'loss_cls')), rel=1e-4)

    plain = model.predict(inputs, [DataSample().set_gt_label(0) for _ in range(3)])
    assert 'relevance_losses' not in plain[0]


def test_non_vit_backbones_train_too():
    """GradMask/RRR need no attention maps: a CNN runs its ordinary forward (double backward
    works through convolutions and batch norm)."""
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='InputGradientGuidedClassifier',
        backbone=dict(type='ResNet_CIFAR', depth=18, stem_channels=8, base_channels=8),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=CLASSES, in_channels=64,
                  loss=dict(type='CrossEntropyLoss', loss_weight=0.2)),
        saliency_loss=dict(type='RRRLoss')))
    losses = model.loss(torch.randn(2, 3, SIZE, SIZE), samples(2))
    losses['loss_rrr'].backward()
    assert model.backbone.conv1.weight.grad.abs().sum() > 0


def test_classifier_errors_name_the_problem():
    with pytest.raises(TypeError, match='saliency_loss'):
        build_classifier('RelevanceFinetuneLoss')
    # The relevance-guided keys are accepted (a baseline config is a delta on a RobustViT one),
    # but a value that would mean something for RobustViT only is refused, naming the key.
    backbone = dict(type='VisionTransformer', arch='deit-tiny', img_size=SIZE, patch_size=PATCH)
    head = dict(type='ConfidenceBoostingHead', num_classes=CLASSES, in_channels=192, target='gt')
    for key, value in (('relevance_loss', dict(type='RelevanceFinetuneLoss')),
                       ('relevance_target', 'pred'), ('create_graph', True)):
        with pytest.raises(ValueError, match=key):
            MODELS.build(dict(type='InputGradientGuidedClassifier', backbone=backbone, head=head,
                              **{key: value}))
    model = MODELS.build(dict(type='InputGradientGuidedClassifier', backbone=backbone, head=head,
                              relevance_loss=None, relevance_target='gt', create_graph=False))
    assert type(model.saliency_loss).__name__ == 'GradMaskLoss'
    with pytest.raises(ValueError, match='Mixup/CutMix'):
        MODELS.build(dict(
            type='InputGradientGuidedClassifier', train_cfg=dict(augments=[dict(type='Mixup',
                                                                                 alpha=0.8)]),
            backbone=dict(type='VisionTransformer', arch='deit-tiny', img_size=SIZE,
                          patch_size=PATCH),
            head=dict(type='VisionTransformerClsHead', num_classes=CLASSES, in_channels=192)))
    model = build_classifier()
    with pytest.raises(KeyError, match='LoadForegroundMask'):
        model.loss(torch.randn(1, 3, SIZE, SIZE), [DataSample().set_gt_label(0)])


# ------------------------------------------------------------------------------ configs
@functools.lru_cache(maxsize=None)
def load(path):
    return Config.fromfile(path)


def flatten(value, prefix=''):
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(flatten(item, f'{prefix}.{key}' if prefix else str(key)))
        return out
    if isinstance(value, (list, tuple)):
        out = {}
        for i, item in enumerate(value):
            out.update(flatten(item, f'{prefix}[{i}]'))
        return out or {prefix: value}
    return {prefix: value}


def config_diff(child, parent):
    """Flattened keys whose values differ (or exist on one side only), ignoring bookkeeping."""
    a = flatten(load(child).to_dict())
    b = flatten(load(parent).to_dict())
    skip = ('filename', 'text', '_scope_', 'model._scope_')
    return {k for k in set(a) | set(b) if k not in skip and not k.endswith('._scope_')
            and a.get(k, '<none>') != b.get(k, '<none>')}


def robustvit(name):
    return osp.join(REPO, 'configs', 'robustvit', name)


def baseline(name):
    return osp.join(BASELINES, name)


ABLATION_CHANGES = {
    'gt-ce': {'model.head.target'},
    'no-bg': {'model.relevance_loss.background_weight'},
    'no-fg': {'model.relevance_loss.foreground_weight'},
    'no-cls': {'model.head.loss_weight'},
    'create-graph': {'model.create_graph'},
}
ABLATION_MODELS = ('vit-base-p16', 'deit-base-p16')  # the paper's Table 4 / 12
ABLATIONS = {f'{m}_robustvit-{a}_imagenet-s.py': (m, changes)
             for m in ABLATION_MODELS for a, changes in ABLATION_CHANGES.items()}
MM_MODELS = ('vit-base-p16', 'vit-large-p16', 'deit-small-p16', 'deit-base-p16')
TIMM_MODELS = ('augreg-vit-small-p16', 'augreg-vit-base-p16', 'augreg-vit-large-p16')
MODELS_ = MM_MODELS + TIMM_MODELS
UNPUBLISHED = ('vit-large-p16', 'augreg-vit-large-p16')  # no baseline values in the paper
KINDS = ('gradmask', 'rrr')
VARIANTS = ('', '-released', '-compat')
# GradMask (released values) vs RobustViT: the classifier, the losses, val batch 5, the '<' rule.
RELEASED_GRADMASK = {
    'model.type', 'model.relevance_loss', 'model.relevance_loss.type',
    'model.relevance_loss.loss_weight', 'model.relevance_loss.background_weight',
    'model.relevance_loss.foreground_weight', 'model.relevance_loss.reverse_mask',
    'model.relevance_loss.ignore_pixels', 'model.relevance_loss.foreground_target',
    'model.saliency_loss.type',
    'model.saliency_loss.loss_weight', 'model.saliency_loss.penalty',
    'val_dataloader.batch_size', 'default_hooks.checkpoint.rule'}


def ce_key(model_name):
    return 'model.loss' if model_name in TIMM_MODELS else 'model.head'


def slow_unless(condition):
    return () if condition else (pytest.mark.slow,)


def test_every_config_in_the_folder_is_covered():
    names = {osp.basename(p) for p in glob.glob(osp.join(BASELINES, '*.py'))}
    expected = set(ABLATIONS) | {f'{m}_{kind}{variant}_imagenet-s.py' for m in MODELS_
                                 for kind in KINDS for variant in VARIANTS}
    assert names == expected


@pytest.mark.parametrize('name', sorted(ABLATIONS))
def test_ablation_configs_change_only_what_they_claim(name):
    model_name, changes = ABLATIONS[name]
    assert config_diff(baseline(name), robustvit(f'{model_name}_robustvit_imagenet-s.py')) == \
        changes
    cfg = load(baseline(name))
    model = MODELS.build(dict(cfg.model, backbone=dict(
        cfg.model.backbone, arch='deit-tiny', img_size=SIZE, patch_size=PATCH),
        head=dict(cfg.model.head, in_channels=192)))
    assert type(model).__name__ == 'RelevanceGuidedClassifier'


@pytest.mark.parametrize('model_name', [
    pytest.param(m, marks=slow_unless(m in ('vit-base-p16', 'augreg-vit-large-p16')))
    for m in MODELS_])
def test_baseline_configs_change_only_what_they_claim(model_name):
    """Each config is a short delta: released GradMask = the RobustViT config with the classifier
    and losses switched; RRR = GradMask with RRR's score and reduction; the default = the released
    variant with the paper's Tables 6-7 values; -compat = the default, inert and unshuffled."""
    parent = robustvit(f'{model_name}_robustvit_imagenet-s.py')
    ce = ce_key(model_name)
    released = {kind: baseline(f'{model_name}_{kind}-released_imagenet-s.py') for kind in KINDS}
    # The DeiT RobustViT configs carry the released temperature of eq. 4; eq. 8 has none.
    ce_of = lambda path: load(path).model[ce.split('.')[1]]  # noqa: E731
    temperature = {f'{ce}.temperature'} if ce_of(parent).temperature != 1 else set()
    assert config_diff(released['gradmask'], parent) == (RELEASED_GRADMASK | {f'{ce}.target'}
                                                         | temperature)
    assert config_diff(released['rrr'], released['gradmask']) == {
        'model.saliency_loss.type', 'model.saliency_loss.penalty'}
    paper_values = {f'{ce}.loss_weight', 'model.saliency_loss.loss_weight',
                    'optim_wrapper.optimizer.lr'}
    for kind in KINDS:
        default = baseline(f'{model_name}_{kind}_imagenet-s.py')
        if model_name in UNPUBLISHED:  # released values; GradMask with the paper's norm
            claimed = {'model.saliency_loss.penalty'} if kind == 'gradmask' else set()
        else:
            claimed = paper_values | ({'model.saliency_loss.penalty'} if kind == 'gradmask'
                                      else set())
        assert config_diff(default, released[kind]) == claimed, kind
        compat = baseline(f'{model_name}_{kind}-compat_imagenet-s.py')
        # The released GradMask computed the mean of squares (it only reaches the val loss there).
        assert config_diff(compat, default) == {
            'model.saliency_loss.reference_compat', 'train_dataloader.sampler.shuffle'} | (
            {'model.saliency_loss.penalty'} if kind == 'gradmask' else set())
        assert load(compat).model.saliency_loss.reference_compat is True
        for config in (default, compat, released[kind]):
            assert ce_of(config).temperature == 1.0, config  # eq. 8: CE without temperature

    cfg = load(released['gradmask'])
    assert cfg.model.saliency_loss.loss_weight == 0.8
    assert cfg.val_dataloader.batch_size == 5 and cfg.train_dataloader.batch_size == 8
    assert cfg.default_hooks.checkpoint.rule == 'less'
    assert cfg.train_dataloader.sampler.shuffle is True
    assert cfg.optim_wrapper.optimizer.lr == load(parent).optim_wrapper.optimizer.lr
    ce_cfg = cfg.model.get('head', cfg.model.get('loss'))
    assert ce_cfg.target == 'gt' and ce_cfg.loss_weight == 0.2


# ------------------------------------------------------------------------------ stock train.py
TINY = '''
_base_ = [{config!r}]
model = dict({model})
{pipelines}loader = dict(num_workers=0, persistent_workers=False, pin_memory=False)
split = dict(data_root={root!r}, data_prefix={prefix!r}, num_classes=2, num_samples=2)
train_dataloader = dict(batch_size=2, **loader, dataset=dict(**split, pipeline=train_pipeline))
val_dataloader = dict(batch_size=2, **loader, dataset=dict(**split, pipeline=val_pipeline))
test_dataloader = val_dataloader
load_from = {ckpt!r}
train_cfg = dict(max_epochs=1)
default_hooks = dict(logger=dict(interval=1))
randomness = dict(seed=0)
'''
TINY_MM = ("backbone=dict(arch=dict(_delete_=True, embed_dims=32, num_layers=2, num_heads=2, "
           "feedforward_channels=64), img_size=32, patch_size=8), head=dict(in_channels=32)")
TINY_TIMM = ("model_name='vit_tiny_patch16_224', img_size=32, patch_size=8, depth=2, "
             "embed_dim=32, num_heads=2")


def write_tiny_config(directory, config, tree, checkpoint):
    path = osp.join(directory, 'tiny_' + osp.basename(config))
    timm = osp.basename(config).startswith('augreg')
    with open(path, 'w') as f:
        f.write(TINY.format(config=config, model=TINY_TIMM if timm else TINY_MM,
                            pipelines=AUGMENTED_PIPELINES,
                            root=tree['data_root'], prefix=tree['data_prefix'], ckpt=checkpoint))
    return path


TRAIN_CONFIGS = [f'{m}_{kind}{variant}_imagenet-s.py' for m in MODELS_ for kind in KINDS
                 for variant in VARIANTS]

# Runs the unmodified stock script once per config, in ONE child process (a fresh interpreter per
# config would cost ~20 s of imports each on the 2-core CI machine), the way tools/train.py runs it.
DRIVER = """
import json, runpy, sys, traceback
from robustvit_mm.stock_tools import stock_tool_path
train_py = stock_tool_path('train.py')
jobs, status_file = json.load(open(sys.argv[1])), sys.argv[2]
status = {}
for name, config, work_dir in jobs:
    sys.argv = [train_py, config, '--work-dir', work_dir]
    try:
        runpy.run_path(train_py, run_name='__main__')
        status[name] = 'ok'
    except BaseException:
        status[name] = traceback.format_exc()
    json.dump(status, open(status_file, 'w'))
sys.exit(0 if all(v == 'ok' for v in status.values()) else 1)
"""


@pytest.fixture(scope='module')
def stock_training_runs(tmp_path_factory):
    """Train every GradMask/RRR config (tiny override) for one epoch through the stock train.py."""
    from mini_imagenet_s import make_imagenet_s_tree

    root = str(tmp_path_factory.mktemp('baselines_train'))
    tree = make_imagenet_s_tree(osp.join(root, 'data'), num_classes=4, per_class=2, size=(40, 48))
    checkpoints = {timm: osp.join(root, f'pretrained_{timm}.pth') for timm in (False, True)}
    jobs = []
    for name in TRAIN_CONFIGS:
        timm = name.startswith('augreg')
        config = write_tiny_config(root, baseline(name), tree, checkpoints[timm])
        if not osp.exists(checkpoints[timm]):
            save_pretrained(config, checkpoints[timm])
        jobs.append((name, config, osp.join(root, 'work', name[:-3])))
    with open(osp.join(root, 'jobs.json'), 'w') as f:
        json.dump(jobs, f)
    env = {k: v for k, v in os.environ.items() if k != 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'}
    env.update(OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='')
    status_file = osp.join(root, 'status.json')
    result = subprocess.run([sys.executable, '-c', DRIVER, osp.join(root, 'jobs.json'),
                             status_file], env=env, capture_output=True, text=True, timeout=1800)
    status = json.load(open(status_file)) if osp.exists(status_file) else {}
    return dict(result=result, status=status, work_dirs={name: w for name, _, w in jobs})


@pytest.mark.slow
@pytest.mark.parametrize('name', TRAIN_CONFIGS)
def test_baseline_config_trains_an_epoch_with_the_stock_train_py(stock_training_runs, name):
    result = stock_training_runs['result']
    status = stock_training_runs['status'].get(name)
    assert status == 'ok', (status or '') + result.stdout[-2000:] + result.stderr[-3000:]

    penalty = 'loss_rrr' if '_rrr' in name else 'loss_gradmask'
    work_dir = stock_training_runs['work_dirs'][name]
    records = scalars(work_dir)
    train = [r for r in records if penalty in r]
    assert train, records
    for r in train:
        for key in ('loss', penalty, 'loss_cls'):
            assert math.isfinite(r[key]), (key, r)
        assert r['loss'] == pytest.approx(r[penalty] + r['loss_cls'], rel=1e-3)
    assert any(r[penalty] > 0 for r in train)
    val = [r for r in records if 'relevance/loss' in r]
    assert len(val) == 1 and math.isfinite(val[0]['relevance/loss'])
    assert val[0][f'relevance/{penalty}'] > 0
    assert any(f.startswith('best_relevance_loss') for f in os.listdir(work_dir))
