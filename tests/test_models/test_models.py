"""The method's modules: losses by hand, the one-forward classifier, the head, weight conversion."""
import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from mmengine.runner import load_checkpoint
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

import robustvit_mm  # noqa: F401  (registers)
from robustvit_mm.models.timm_weights import convert_timm_checkpoint
from robustvit_mm.relevance import gae_relevance

from masked_samples import masked_samples

EMBED, SIZE, PATCH, CLASSES = 48, 32, 4, 10


def tiny_backbone(**overrides):
    backbone = dict(type='VisionTransformer', img_size=SIZE, patch_size=PATCH, drop_path_rate=0.,
                    arch=dict(embed_dims=EMBED, num_layers=3, num_heads=3,
                              feedforward_channels=2 * EMBED))
    backbone.update(overrides)
    return backbone


def build_classifier(head=None, **kwargs):
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='RelevanceGuidedClassifier', backbone=tiny_backbone(),
        head=head or dict(type='ConfidenceBoostingHead', num_classes=CLASSES, in_channels=EMBED),
        data_preprocessor=dict(type='ClsDataPreprocessor', mean=[127.5] * 3, std=[127.5] * 3),
        **kwargs))
    torch.nn.init.normal_(model.head.layers.head.weight, std=0.5)  # init_weights() zeroes it
    return model


def samples(batch, size=SIZE):
    return masked_samples(batch, size, CLASSES)


# ---------------------------------------------------------------- losses by hand
def test_relevance_loss_equals_hand_computation():
    relevance = torch.tensor([[[[0.2, 0.9], [0.0, 0.5]]]])
    mask = torch.tensor([[[[0.0, 1.0], [1.0, 0.4]]]])  # 0.4: a fractional boundary pixel
    loss = MODELS.build(dict(type='RelevanceFinetuneLoss'))
    terms = loss(relevance, mask)
    # reference rule: S~ = 1 - S on exact 0/1 pixels, S~ = S on fractional ones
    s_rev = torch.tensor([1.0, 0.0, 0.0, 0.4])
    r, s = relevance.flatten(), mask.flatten()
    bg = ((r * s_rev) ** 2).mean()
    fg = ((r * s - s) ** 2).mean()
    assert terms['loss_background'].item() == pytest.approx(0.8 * 2.0 * bg.item(), rel=1e-6)
    assert terms['loss_foreground'].item() == pytest.approx(0.8 * 0.3 * fg.item(), rel=1e-6)

    exact = MODELS.build(dict(type='RelevanceFinetuneLoss', reverse_mask='exact'))(relevance, mask)
    bg_exact = ((r * (1 - s)) ** 2).mean()
    assert exact['loss_background'].item() == pytest.approx(1.6 * bg_exact.item(), rel=1e-6)
    assert exact['loss_background'].item() != pytest.approx(terms['loss_background'].item())


def test_foreground_target_one_is_the_papers_eq_2():
    relevance = torch.tensor([[[[0.2, 0.9], [0.0, 0.5]]]], requires_grad=True)
    binary = torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]]])
    fractional = torch.tensor([[[[0.0, 1.0], [1.0, 0.4]]]])
    released = MODELS.build(dict(type='RelevanceFinetuneLoss'))
    paper = MODELS.build(dict(type='RelevanceFinetuneLoss', foreground_target='one'))
    assert released.foreground_target == 'mask'  # the default: the released code's form
    r = relevance.detach().flatten()

    def fg_grad(loss, mask):
        (grad,) = torch.autograd.grad(loss(relevance, mask)['loss_foreground'], relevance)
        return grad

    for mask in (binary, fractional):
        s = mask.flatten()
        value = paper(relevance, mask)['loss_foreground'].item()
        # MSE(R * S, 1), weighted 0.8 * 0.3
        assert value == pytest.approx(0.24 * ((r * s - 1) ** 2).mean().item(), rel=1e-6)
    # Binary masks: same gradient, the value larger by 0.24 * (share of background pixels).
    torch.testing.assert_close(fg_grad(paper, binary), fg_grad(released, binary))
    assert (paper(relevance, binary)['loss_foreground'] - released(relevance, binary)[
        'loss_foreground']).item() == pytest.approx(0.24 * 1 / 4)
    # A fractional boundary pixel (S = 0.4, R = 0.5): 2S(RS - 1) against 2S^2(R - 1), / 4 pixels.
    paper_grad, released_grad = fg_grad(paper, fractional), fg_grad(released, fractional)
    assert paper_grad[0, 0, 1, 1].item() == pytest.approx(0.24 * 2 * 0.4 * (0.2 - 1) / 4)
    assert released_grad[0, 0, 1, 1].item() == pytest.approx(0.24 * 2 * 0.16 * (0.5 - 1) / 4)
    with pytest.raises(ValueError, match=r"foreground_target='1'; choose one of \('mask', 'one'\)"):
        MODELS.build(dict(type='RelevanceFinetuneLoss', foreground_target='1'))


def test_relevance_loss_ignore_pixels_option():
    relevance = torch.full((1, 1, 2, 2), 0.5)
    mask = torch.tensor([[[[0.0, 0.0], [1.0, 1.0]]]])
    ignore = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    faithful = MODELS.build(dict(type='RelevanceFinetuneLoss'))(relevance, mask, ignore)
    excluded = MODELS.build(dict(type='RelevanceFinetuneLoss', ignore_pixels='exclude'))(
        relevance, mask, ignore)
    # faithful: both background pixels count: 1.6 * (0.25 + 0.25) / 4; excluded: only one does
    assert faithful['loss_background'].item() == pytest.approx(1.6 * 0.5 / 4)
    assert excluded['loss_background'].item() == pytest.approx(1.6 * 0.25 / 4)


def test_relevance_loss_rejects_bad_options_and_shapes():
    with pytest.raises(ValueError, match='reverse_mask'):
        MODELS.build(dict(type='RelevanceFinetuneLoss', reverse_mask='flip'))
    with pytest.raises(ValueError, match='ignore_pixels'):
        MODELS.build(dict(type='RelevanceFinetuneLoss', ignore_pixels='drop'))
    with pytest.raises(ValueError, match='shape'):
        MODELS.build(dict(type='RelevanceFinetuneLoss'))(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 8, 8))


def test_confidence_boosting_uses_own_argmax_and_temperature():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.5, 3.0]])
    gt = torch.tensor([1, 0])  # deliberately not the argmax
    loss = MODELS.build(dict(type='ConfidenceBoostingLoss', loss_weight=0.2, temperature=0.5))
    expected = 0.2 * F.cross_entropy(logits / 0.5, torch.tensor([0, 2]))
    assert loss(logits, gt).item() == pytest.approx(expected.item(), rel=1e-6)
    gt_loss = MODELS.build(dict(type='ConfidenceBoostingLoss', target='gt', temperature=0.5))
    assert gt_loss(logits, gt).item() == pytest.approx(
        (0.2 * F.cross_entropy(logits / 0.5, gt)).item(), rel=1e-6)
    per_sample = loss(logits, gt, reduction_override='none')
    assert per_sample.shape == (2,) and per_sample.mean().item() == pytest.approx(expected.item())


def test_confidence_boosting_head_refuses_a_second_loss():
    with pytest.raises(ValueError, match='temperature'):
        MODELS.build(dict(type='ConfidenceBoostingHead', num_classes=3, in_channels=8,
                          loss=dict(type='CrossEntropyLoss')))


# ---------------------------------------------------------------- the classifier
def test_loss_is_one_forward_with_relevance_for_the_gt_class():
    model = build_classifier()
    inputs = torch.randn(3, 3, SIZE, SIZE)
    data = samples(3)
    losses = model.loss(inputs, data)
    assert set(losses) >= {'loss_background', 'loss_foreground', 'loss_cls', 'relevance_iou'}
    assert 'loss' not in losses  # the total is mmengine's, not shadowed by the head
    assert not losses['relevance_iou'].requires_grad

    # Same numbers as the public API + the loss modules on a separate forward.
    relevance, logits = gae_relevance(model, inputs, torch.cat([d.gt_label for d in data]))
    masks = torch.stack([torch.from_numpy(d.fg_mask) for d in data])[:, None]
    expected = model.relevance_loss(relevance, masks)
    assert losses['loss_background'].item() == pytest.approx(expected['loss_background'].item(),
                                                             rel=1e-5)
    expected_cls = 0.2 * F.cross_entropy(logits, logits.argmax(1))
    assert losses['loss_cls'].item() == pytest.approx(expected_cls.item(), rel=1e-5)

    total, log_vars = model.parse_losses(losses)
    total.backward()
    assert torch.isfinite(total)
    assert model.backbone.layers[0].attn.qkv.weight.grad.abs().sum() > 0
    assert model.head.layers.head.weight.grad.abs().sum() > 0  # from the CE term


def test_relevance_term_alone_trains_the_attention_path():
    model = build_classifier()
    losses = model.loss(torch.randn(2, 3, SIZE, SIZE), samples(2))
    (losses['loss_background'] + losses['loss_foreground']).backward()
    assert model.backbone.layers[0].ffn.layers[1].weight.grad.abs().sum() > 0
    # The gradient factor is a constant: the head only learns from the CE
    # (docs/faithfulness.md#gradient-constant).
    head_grad = model.head.layers.head.weight.grad
    assert head_grad is None or head_grad.abs().sum() == 0


def test_create_graph_reaches_the_head():
    model = build_classifier(create_graph=True)
    losses = model.loss(torch.randn(2, 3, SIZE, SIZE), samples(2))
    losses['loss_background'].backward()
    assert model.head.layers.head.weight.grad.abs().sum() > 0


def test_predict_attaches_the_validation_loss_per_sample():
    model = build_classifier().eval()
    inputs = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():  # as in mmengine's ValLoop
        out = model.predict(inputs, samples(2))
    train_terms = model.loss(inputs, samples(2))
    terms = [d.relevance_losses for d in out]
    assert all(set(t) == {'loss_background', 'loss_foreground', 'loss_cls', 'relevance_iou'}
               for t in terms)
    mean_bg = np.mean([t['loss_background'] for t in terms])
    assert mean_bg == pytest.approx(train_terms['loss_background'].item(), rel=1e-5)
    assert out[0].pred_label is not None
    plain = model.predict(inputs, [DataSample().set_gt_label(0) for _ in range(2)])
    assert 'relevance_losses' not in plain[0]


def test_missing_mask_is_a_clear_error():
    model = build_classifier()
    with pytest.raises(KeyError, match='LoadForegroundMask'):
        model.loss(torch.randn(1, 3, SIZE, SIZE), [DataSample().set_gt_label(0)])


def test_mixup_with_masks_is_refused():
    with pytest.raises(ValueError, match='Mixup/CutMix'):
        build_classifier(train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8)]))


def test_non_vit_backbone_is_refused_at_build_time():
    with pytest.raises(TypeError, match='Supported'):
        MODELS.build(dict(type='RelevanceGuidedClassifier',
                          backbone=dict(type='ResNet', depth=18),
                          head=dict(type='LinearClsHead', num_classes=3, in_channels=512)))


def test_timm_classifier_variant_trains():
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='RelevanceGuidedTimmClassifier', model_name='vit_tiny_patch16_224', pretrained=False,
        img_size=SIZE, patch_size=PATCH, depth=2, num_classes=CLASSES,
        loss=dict(type='ConfidenceBoostingLoss', loss_weight=0.2)))
    losses = model.loss(torch.randn(2, 3, SIZE, SIZE), samples(2))
    total, _ = model.parse_losses(losses)
    total.backward()
    assert torch.isfinite(total) and 'loss_cls' in losses
    assert model.model.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert model.model.blocks[0].attn.fused_attn  # restored after the recorded forward


# ---------------------------------------------------------------- weights
@pytest.mark.parametrize('target', ['mmpretrain', 'timm'])
def test_timm_weights_convert_with_identical_logits(tmp_path, target):
    torch.manual_seed(0)
    source = timm.create_model('vit_tiny_patch16_224', img_size=SIZE, patch_size=PATCH, depth=2,
                               num_classes=CLASSES).eval()
    torch.save({'model': source.state_dict()}, tmp_path / 'timm.pth')  # DeiT-style nesting
    convert_timm_checkpoint(tmp_path / 'timm.pth', tmp_path / 'out.pth', target)
    if target == 'mmpretrain':
        model = MODELS.build(dict(
            type='ImageClassifier',
            backbone=dict(type='VisionTransformer', img_size=SIZE, patch_size=PATCH,
                          arch=dict(embed_dims=192, num_layers=2, num_heads=3,
                                    feedforward_channels=768)),
            head=dict(type='VisionTransformerClsHead', num_classes=CLASSES, in_channels=192)))
    else:
        model = MODELS.build(dict(type='TimmClassifier', model_name='vit_tiny_patch16_224',
                                  img_size=SIZE, patch_size=PATCH, depth=2, num_classes=CLASSES))
    load_checkpoint(model.eval(), str(tmp_path / 'out.pth'), strict=True)
    x = torch.randn(2, 3, SIZE, SIZE)
    torch.testing.assert_close(model(x, mode='tensor'), source(x), atol=1e-5, rtol=1e-5)


def test_unconvertible_timm_keys_are_named(tmp_path):
    state = {'cls_token': torch.zeros(1, 1, 4), 'dist_token': torch.zeros(1, 1, 4)}
    torch.save(state, tmp_path / 'distilled.pth')
    with pytest.raises(ValueError, match='dist_token'):
        convert_timm_checkpoint(tmp_path / 'distilled.pth', tmp_path / 'out.pth')


def test_predict_with_masks_but_no_labels_skips_the_training_loss():
    # The relevance-as-segmentation test carries masks without class labels.
    model = build_classifier().eval()
    data = samples(2)
    for sample in data:
        del sample.gt_label
    with torch.no_grad():
        out = model.predict(torch.randn(2, 3, SIZE, SIZE), data)
    assert 'relevance_losses' not in out[0] and out[0].pred_label is not None


# ---------------------------------------------------------------- public surface
def test_models_package_exports_every_registered_class():
    import robustvit_mm.models as models
    registered = {name for name, cls in MODELS.module_dict.items()
                  if cls.__module__.startswith('robustvit_mm.models')}
    assert registered and registered <= set(models.__all__)
    for name in models.__all__:
        assert hasattr(models, name), name


def test_paper_hparams_data_file_is_complete():
    from robustvit_mm.models import paper_hparams
    hparams = paper_hparams()
    models = hparams['robustvit']['models']
    assert set(models) == {'ViT-B', 'ViT-L', 'AR-S', 'AR-B', 'AR-L', 'DeiT-S', 'DeiT-B'}
    for kind in ('gradmask', 'rrr'):
        published = set(hparams['baselines'][kind])
        assert published | set(hparams['baselines']['unpublished']) == set(models)
        assert not published & set(hparams['baselines']['unpublished'])
        for values in hparams['baselines'][kind].values():
            assert set(values) == {'lambda_cls', 'lambda_bg', 'lr'}
            assert all(v > 0 for v in values.values())
    assert 'provenance' in hparams['baselines'] and 'provenance' in hparams['robustvit']


@pytest.mark.parametrize('kind', ['RelevanceGuidedClassifier', 'InputGradientGuidedClassifier'])
def test_a_head_wider_than_the_backbone_fails_at_build_naming_both_widths_and_the_key(kind):
    head = dict(type='ConfidenceBoostingHead', num_classes=CLASSES, in_channels=2 * EMBED)
    extra = dict(relevance_loss=None) if kind == 'InputGradientGuidedClassifier' else {}
    with pytest.raises(ValueError, match=rf'model\.head\.in_channels={2 * EMBED}, but the backbone '
                                         rf'VisionTransformer gives {EMBED}-dim features.*set '
                                         rf'model\.head\.in_channels={EMBED}'):
        MODELS.build(dict(type=kind, backbone=tiny_backbone(), head=head, **extra))
