"""The benchmark's model, batch and optimiser: a config's classifier with random weights (or the
``--quick`` shape), normalised random images with mask-carrying data samples, and the config's
optimiser wrapper built as the runner builds it."""
import copy
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from mmcv.cnn.bricks.drop import DropPath
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper as mmengine_build_optim_wrapper
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from ..relevance.capture import find_vit

# --quick: a ViT with the paper's patch size, scaled down so that the whole run takes seconds.
QUICK_BACKBONE = dict(type='VisionTransformer', img_size=112, patch_size=16, drop_rate=0.0,
                      drop_path_rate=0.0, init_cfg=None,
                      arch=dict(embed_dims=192, num_layers=6, num_heads=3,
                                feedforward_channels=768))
QUICK_NAME = 'quick (ViT 6x192, 3 heads, 112 px, patch 16)'
# The released code's optimiser (configs/_base_/schedules/robustvit_50e.py), used when a config has
# none.
DEFAULT_OPTIM_WRAPPER = dict(
    optimizer=dict(type='AdamW', lr=3e-6, weight_decay=1e-4, betas=(0.9, 0.999), eps=1e-8))


def log(message):
    """The benchmark's progress lines (stderr: stdout carries the table)."""
    print(message, file=sys.stderr, flush=True)


def _plain(cfg):
    return cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg)


def load_model_cfg(config, quick=False):
    """``(model, optim_wrapper, name)`` of a config file: its model dict (or the --quick shape),
    its ``optim_wrapper`` dict (what the runner would build) and its name."""
    cfg = Config.fromfile(config)
    model_cfg = _plain(copy.deepcopy(cfg.model))
    optim_cfg = _plain(copy.deepcopy(cfg.get('optim_wrapper', DEFAULT_OPTIM_WRAPPER)))
    name = os.path.splitext(os.path.basename(config))[0]
    if quick:
        model_cfg['backbone'] = copy.deepcopy(QUICK_BACKBONE)
        model_cfg['head']['in_channels'] = QUICK_BACKBONE['arch']['embed_dims']
        name = QUICK_NAME
    return model_cfg, optim_cfg, name


def build_model(model_cfg, device='cpu', seed=0):
    """The config's classifier with random weights; the zero-initialised head is randomised."""
    model_cfg = copy.deepcopy(model_cfg)
    model_cfg.pop('init_cfg', None)
    model_cfg.pop('pretrained', None)  # TimmClassifier: never download
    if 'backbone' in model_cfg:
        model_cfg['backbone']['init_cfg'] = None
    torch.manual_seed(seed)
    model = MODELS.build(model_cfg)
    head = classifier_head(model)
    torch.nn.init.normal_(head.weight, std=head.in_features ** -0.5)  # logits ~ N(0, 1)
    torch.nn.init.normal_(head.bias, std=0.1)
    return model.to(device).train()


def classifier_head(model):
    """The final linear layer: mmpretrain ViT head (``layers.head``), a linear head's ``fc``, or
    the timm model's ``head``."""
    head = model.head if hasattr(model, 'head') else model.model.head
    if hasattr(head, 'layers'):
        return head.layers.head
    return head.fc if hasattr(head, 'fc') else head


def compile_backbone(model, **compile_kwargs):
    """``torch.compile`` the backbone in place (``nn.Module.compile``: its class stays, so the
    attention recorder still finds the ViT). mmcv's ``DropPath`` holds numpy drop rates, on which
    dynamo cannot branch (a graph break per block): they become Python floats (same values)."""
    for module in model.modules():
        if isinstance(module, DropPath):
            module.drop_prob = float(module.drop_prob)
    (model.backbone if hasattr(model, 'backbone') else model.model).compile(**compile_kwargs)
    return model


def input_size(model):
    vit, family = find_vit(model)
    size = vit.img_size if family == 'mmpretrain' else vit.patch_embed.img_size
    return tuple(size) if isinstance(size, (tuple, list)) else (size, size)


def make_batch(model, batch, device='cpu', seed=0):
    """Normalised random images and data samples carrying fg/ignore masks and GT labels.

    Masks are ellipses drawn at 1/8 resolution and resized bilinearly, so they have fractional
    boundary pixels like the resized ImageNet-S masks of the real pipeline.
    """
    height, width = input_size(model)
    num_classes = classifier_head(model).out_features
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randn(batch, 3, height, width, generator=gen)
    small_h, small_w = max(height // 8, 4), max(width // 8, 4)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, small_h), torch.linspace(-1, 1, small_w),
                            indexing='ij')
    samples = []
    for i in range(batch):
        cy, cx, ry, rx = (torch.rand(4, generator=gen) * torch.tensor([0.8, 0.8, 0.5, 0.5])
                          + torch.tensor([-0.4, -0.4, 0.3, 0.3])).tolist()
        blob = ((((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2) <= 1).float()
        mask = F.interpolate(blob[None, None], size=(height, width), mode='bilinear',
                             align_corners=False)[0, 0]
        sample = DataSample().set_gt_label(int(torch.randint(num_classes, (1,), generator=gen)))
        sample.set_field(mask.numpy(), 'fg_mask')
        sample.set_field(np.zeros((height, width), np.float32), 'ignore_mask')
        samples.append(sample.to(device))
    return inputs.to(device), samples


def build_optim_wrapper(model, optim_cfg=None, amp=None, fused=False):
    """The config's optimiser wrapper, built as the runner builds it (mmengine).

    ``amp``: 'bfloat16'/'float16' turns it into mmengine's ``AmpOptimWrapper`` (accelerators only).
    ``fused``: ``optimizer.fused=True`` (torch's single-pass AdamW kernel, CPU and CUDA).
    """
    cfg = copy.deepcopy(optim_cfg or DEFAULT_OPTIM_WRAPPER)
    cfg.setdefault('type', 'OptimWrapper')
    if fused:
        cfg['optimizer']['fused'] = True
    if amp:
        cfg.update(type='AmpOptimWrapper', dtype=amp)
    return mmengine_build_optim_wrapper(model, cfg)
