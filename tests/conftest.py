import contextlib
import logging
import os

import pytest

# Keep the 2-core CI machine responsive when tests spawn subprocesses.
os.environ.setdefault('OMP_NUM_THREADS', '2')


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: end-to-end checks (run in CI; skip locally with -m "not slow")')


@pytest.fixture
def repo_root():
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --------------------------------------------------------------------------- tiny ViT models
# One builder for every supported attention family, at tiny shapes (CPU, seconds). The head is
# randomised: mmpretrain's VisionTransformerClsHead.init_weights() zeroes it, and a zero head gives
# zero gradients to every attention map (and so a vacuous relevance test).
TINY_NUM_CLASSES = 7
MMPRETRAIN_FAMILIES = ('vit', 'deit_distilled', 'deit3', 'beit', 'beit_cls', 'eva02')
TIMM_FAMILIES = ('timm', 'timm_classifier', 'timm_reg', 'timm_beit', 'timm_eva', 'timm_eva_reg')
TINY_FAMILIES = MMPRETRAIN_FAMILIES + TIMM_FAMILIES
# The timm model behind each timm family (shapes overridden below), and its extra arguments.
TIMM_MODELS = {'timm': ('vit_tiny_patch16_224', {}),
               'timm_classifier': ('vit_tiny_patch16_224', {}),
               # DINOv2 with registers: layer scale, 2 register tokens after the class token
               'timm_reg': ('vit_tiny_patch16_224', dict(reg_tokens=2, init_values=0.1)),
               'timm_beit': ('beitv2_base_patch16_224', dict(init_values=0.1)),  # 1e-5: flat maps
               'timm_eva': ('eva02_tiny_patch14_224', {}),
               'timm_eva_reg': ('eva02_tiny_patch14_224', dict(num_reg_tokens=2))}


def tiny_backbone_cfg(family, img_size=32, patch=4, depth=2, embed=32, heads=2, **kwargs):
    """The mmpretrain backbone dict of an mmpretrain family."""
    arch = dict(embed_dims=embed, num_layers=depth, num_heads=heads, feedforward_channels=2 * embed)
    kind = dict(vit='VisionTransformer', deit_distilled='DistilledVisionTransformer',
                deit3='DeiT3', beit='BEiTViT', beit_cls='BEiTViT', eva02='ViTEVA02')[family]
    cfg = dict(type=kind, arch=arch, img_size=img_size, patch_size=patch, **kwargs)
    if family == 'beit':  # as BEiT / BEiT-v2 are fine-tuned: patch-average pooling, layer scale
        cfg.update(out_type='avg_featmap', layer_scale_init_value=0.1)
    elif family == 'beit_cls':
        cfg.update(out_type='cls_token', layer_scale_init_value=0.1)
    elif family == 'eva02':
        cfg.update(out_type='avg_featmap')
    return cfg


def tiny_head_cfg(family, embed=32, num_classes=TINY_NUM_CLASSES, confidence_boosting=False):
    if confidence_boosting and family in ('vit', 'deit3', 'beit_cls'):
        return dict(type='ConfidenceBoostingHead', num_classes=num_classes, in_channels=embed)
    if family == 'deit_distilled':
        return dict(type='DeiTClsHead', num_classes=num_classes, in_channels=embed)
    if family in ('beit', 'eva02'):  # a pooled feature, no pre-logits layer
        return dict(type='LinearClsHead', num_classes=num_classes, in_channels=embed)
    return dict(type='VisionTransformerClsHead', num_classes=num_classes, in_channels=embed)


def tiny_timm_kwargs(family, img_size=32, patch=4, depth=2, embed=48, heads=3, **kwargs):
    name, extra = TIMM_MODELS[family]
    return dict(model_name=name, img_size=img_size, patch_size=patch, depth=depth,
                embed_dim=embed, num_heads=heads, num_classes=TINY_NUM_CLASSES, **extra, **kwargs)


def randomise_head(model, std=0.5):
    """Non-zero logits gradients: the linear layers of any tiny model's head get N(0, std)."""
    import torch
    head = model.head if hasattr(model, 'head') else model.model.head
    for layer in [m for m in head.modules() if isinstance(m, torch.nn.Linear)]:
        for param in layer.parameters():
            torch.nn.init.normal_(param, std=std)
    return model


def build_tiny_model(family, img_size=32, patch=4, depth=2, seed=0, **kwargs):
    """A tiny model of ``family`` (TINY_FAMILIES) in eval mode with a random head: an mmpretrain
    ImageClassifier, a bare timm model (the other 'timm_*' families and 'timm') or an
    mmpretrain TimmClassifier ('timm_classifier'). ``kwargs`` go to the backbone / timm model."""
    import timm
    import torch
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    import robustvit_mm  # noqa: F401  (registers)
    init_default_scope('mmpretrain')
    torch.manual_seed(seed)
    if family in MMPRETRAIN_FAMILIES:
        backbone = tiny_backbone_cfg(family, img_size, patch, depth, **kwargs)
        model = MODELS.build(dict(type='ImageClassifier', backbone=backbone, neck=None,
                                  head=tiny_head_cfg(family)))
        with quiet_mmengine():
            model.init_weights()  # the real initialisation: zero head, trunc-normal pos_embed ...
    elif family == 'timm_classifier':
        model = MODELS.build(dict(type='TimmClassifier', pretrained=False, dynamic_img_size=True,
                                  **tiny_timm_kwargs(family, img_size, patch, depth, **kwargs)))
    else:
        cfg = tiny_timm_kwargs(family, img_size, patch, depth, **kwargs)
        dynamic = family in ('timm', 'timm_reg')  # Beit: no dynamic size (relative pos. bias)
        model = timm.create_model(cfg.pop('model_name'), pretrained=False,
                                  **(dict(dynamic_img_size=True) if dynamic else {}), **cfg)
    return randomise_head(model).eval()


def tiny_relevance_cfg(family, img_size=32, patch=4, depth=2, **kwargs):
    """A RelevanceGuided[Timm]Classifier config of ``family`` (the training step's model)."""
    if family in MMPRETRAIN_FAMILIES:
        return dict(type='RelevanceGuidedClassifier',
                    backbone=dict(tiny_backbone_cfg(family, img_size, patch, depth, **kwargs),
                                  drop_rate=0.0, drop_path_rate=0.0),
                    neck=None, head=tiny_head_cfg(family, confidence_boosting=True),
                    relevance_loss=dict(type='RelevanceFinetuneLoss'))
    timm_family = 'timm' if family == 'timm_classifier' else family
    return dict(type='RelevanceGuidedTimmClassifier', pretrained=False,
                loss=dict(type='ConfidenceBoostingLoss', loss_weight=0.2),
                **tiny_timm_kwargs(timm_family, img_size, patch, depth, **kwargs))


@contextlib.contextmanager
def quiet_mmengine():
    """init_weights() logs one INFO paragraph per parameter."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


@pytest.fixture
def tiny_model():
    """``tiny_model(family, img_size=32, patch=4, depth=2, seed=0, **kwargs)``: see build_tiny_model."""
    return build_tiny_model


@pytest.fixture
def tiny_relevance_model():
    """``tiny_relevance_model(family, ...)``: a RelevanceGuided[Timm]Classifier of ``family`` with
    random weights and a random head, as the benchmark builds it (train mode)."""
    from robustvit_mm.experiments.benchmark_setup import build_model

    def build(family, seed=0, **kwargs):
        return sharpen_attention(build_model(tiny_relevance_cfg(family, **kwargs), seed=seed))
    return build


def sharpen_attention(model, std=0.3):
    """Freshly initialised attention is nearly uniform, and with a patch-average head (BEiT,
    EVA-02) the relevance then varies by ~1e-4 of its mean: float32 noise would dominate any
    comparison of two computations. Larger q/k/v weights make the maps (and the test) meaningful."""
    import torch
    generator = torch.Generator().manual_seed(7)
    for module in model.modules():
        qkv = getattr(module, 'qkv', None)
        if isinstance(qkv, torch.nn.Linear) and hasattr(module, 'num_heads'):
            with torch.no_grad():
                qkv.weight.copy_(torch.randn(qkv.weight.shape, generator=generator) * std)
    return model
