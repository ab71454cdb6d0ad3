"""Tiny runs of the paper's configs through the STOCK tools, shared by the end-to-end tests
(test_method_e2e.py, test_baselines.py) and the reliability tests (test_distributed.py,
test_resume.py, test_bad_input.py): starting the tools, 'pretrained' tiny weights, the runs' scalars.

One tiny config (``TINY_CONFIG``, written by ``write_config``) inherits the paper's DeiT-S config (so
the runtime base with its guard hooks, the schedule and the method are the real ones) and overrides
only the model size and the data; ``DETERMINISTIC`` (the reliability tests: Resize only, no shuffling)
or ``AS_CONFIGURED`` (the end-to-end tests: the released code's augmenting pipelines) fills in the rest.
"""
import json
import os
import os.path as osp
import socket
import subprocess
import sys

import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS

from mini_imagenet_s import make_imagenet_s_tree
from robustvit_mm.stock_tools import stock_tool_path

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PAPER_CONFIG = osp.join(REPO, 'configs', 'robustvit', 'deit-small-p16_robustvit_imagenet-s.py')

TINY_CONFIG = '''
_base_ = [{paper!r}]
data_root = {root!r}
data_prefix = {prefix!r}
model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dims=48, num_layers=3, num_heads=3,
                            feedforward_channels=96), img_size=32, patch_size=4),
    head=dict(in_channels=48))
{pipelines}{loader}
split = dict(data_root=data_root, data_prefix=data_prefix, num_classes={num_classes},
             num_samples=4)
train_dataloader = dict(batch_size={batch_size}, **loader, {sampler}
                        dataset=dict(**split, pipeline=train_pipeline))
val_dataloader = dict(batch_size=2, **loader, dataset=dict(**split, pipeline=val_pipeline))
test_dataloader = val_dataloader
load_from = {ckpt!r}
optim_wrapper = dict(optimizer=dict(lr=1e-3))
{schedule}train_cfg = dict(max_epochs={epochs})
default_hooks = dict(logger=dict(interval=1))
custom_hooks = [dict(type='GAERelevanceHook', interval=2, num_samples=2)]
randomness = dict(seed=0{deterministic})
{extra}
'''

# Deterministic runs (the reliability tests): the same pixels every epoch and in every process, and
# an lr that changes every epoch, so a resume must restore it.
DETERMINISTIC = dict(
    pipelines='''
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadForegroundMask'),
    dict(type='WithMask', transforms=[dict(type='Resize', scale=(32, 32), keep_ratio=False)]),
    dict(type='PackInputs', algorithm_keys=['fg_mask', 'ignore_mask']),
]
val_pipeline = train_pipeline
''',
    loader='loader = dict(num_workers=0, persistent_workers=False, pin_memory=False)',
    sampler="sampler=dict(type='DefaultSampler', shuffle=False),",
    schedule='param_scheduler = dict(step_size=1)\n',
    deterministic=', deterministic=True')


# The released code's augmenting pipelines (crop + flip / resize + centre crop) at 32 px, as config text.
AUGMENTED_PIPELINES = '''
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadForegroundMask'),
    dict(type='WithMask', transforms=[
        dict(type='Resize', scale=(36, 36), keep_ratio=False),
        dict(type='RandomCrop', crop_size=32),
        dict(type='RandomFlip', prob=0.5, direction='horizontal')]),
    dict(type='PackInputs', algorithm_keys=['fg_mask', 'ignore_mask']),
]
val_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadForegroundMask'),
    dict(type='WithMask', transforms=[
        dict(type='ResizeEdge', scale=36, edge='short'), dict(type='CenterCrop', crop_size=32)]),
    dict(type='PackInputs', algorithm_keys=['fg_mask', 'ignore_mask']),
]
'''


# The method as the paper's config runs it (the end-to-end tests): the released code's pipelines,
# its shuffling sampler and schedule; num_workers=0 and nothing else, so the base config must keep
# the stock train.py from adding persistent_workers=True, which torch refuses without workers.
AS_CONFIGURED = dict(pipelines=AUGMENTED_PIPELINES, loader='loader = dict(num_workers=0)', sampler='',
                     schedule='', deterministic='')


def make_tree(root, num_classes=9):
    """9 classes x 4 images: 6 training classes (24 images), 3 held-out ones (3 val images)."""
    return make_imagenet_s_tree(root, num_classes=num_classes, per_class=4, size=(40, 48))


def write_config(path, tree, pretrained, epochs=1, batch_size=8, num_classes=6, extra='',
                 run=DETERMINISTIC):
    """The tiny run of the paper's DeiT-S config; ``run`` is DETERMINISTIC or AS_CONFIGURED."""
    with open(path, 'w') as f:
        f.write(TINY_CONFIG.format(paper=PAPER_CONFIG, root=tree['data_root'],
                                   prefix=tree['data_prefix'], ckpt=str(pretrained), epochs=epochs,
                                   batch_size=batch_size, num_classes=num_classes, extra=extra,
                                   **run))
    return str(path)


def save_pretrained(config_path, out, seed=0):
    """'Pretrained' weights for the tiny model: initialised, with a random (not zero) head, so the
    relevance and the input gradient are informative from the first step, as with real weights."""
    import robustvit_mm  # noqa: F401
    torch.manual_seed(seed)
    model = MODELS.build(Config.fromfile(config_path).model)
    model.init_weights()
    # mmpretrain ImageClassifier (VisionTransformerClsHead) or TimmClassifier (timm ViT).
    head = model.model.head if hasattr(model, 'model') else model.head.layers.head
    torch.nn.init.normal_(head.weight, std=0.5)
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, out)
    return str(out)


def tool_env(**extra):
    env = {k: v for k, v in os.environ.items() if k != 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'}
    env['OMP_NUM_THREADS'] = '1'
    # dist_train.sh calls `python`: make it this interpreter.
    env['PATH'] = osp.dirname(sys.executable) + os.pathsep + env.get('PATH', '')
    env.update(extra)
    return env


def start(tool, *args, env=None, launcher=None):
    """Start a stock tool (``train.py``, ``test.py``) or, with ``launcher='dist_train.sh'``, the stock
    distributed launcher (``args`` then begin with CONFIG NPROC). Returns the Popen."""
    if launcher:
        cmd = ['bash', stock_tool_path(launcher), *args]
    else:
        cmd = [sys.executable, stock_tool_path(tool), *args]
    return subprocess.Popen(cmd, env=env or tool_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(proc, expect_ok=True, timeout=600):
    out, _ = proc.communicate(timeout=timeout)
    if expect_ok:
        assert proc.returncode == 0, out[-5000:]
    else:
        assert proc.returncode != 0, out[-3000:]
    return out


def run(tool, *args, expect_ok=True, **kwargs):
    return finish(start(tool, *args, **kwargs), expect_ok=expect_ok)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def load_state(path):
    return torch.load(path, map_location='cpu', weights_only=False)


def scalars(work_dir):
    """Every record of the runs' scalars.json (LocalVisBackend), oldest run first."""
    runs = sorted(d for d in os.listdir(work_dir) if osp.isdir(osp.join(work_dir, d, 'vis_data')))
    records = []
    for run_dir in runs:
        with open(osp.join(work_dir, run_dir, 'vis_data', 'scalars.json')) as f:
            records += [json.loads(line) for line in f]
    return records


def val_records(work_dir):
    return [r for r in scalars(work_dir) if 'relevance/loss' in r]


def tensorboard_images(log_dir):
    """Image records in the TensorBoard event files under ``log_dir``: {tag: count}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(log_dir), size_guidance={'images': 0})
    events.Reload()
    return {tag: len(events.Images(tag)) for tag in events.Tags()['images']}


# A tiny 1000-class ViT for the shifted-set tests through the stock test.py (patch 32 at 224 px).
TINY_MODEL = dict(
    type='ImageClassifier',
    backbone=dict(type='VisionTransformer',
                  arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64),
                  img_size=224, patch_size=32, drop_rate=0.0),
    neck=None,
    head=dict(type='VisionTransformerClsHead', num_classes=1000, in_channels=32))


def save_tiny_checkpoint(path, bias=None, seed=0):
    """The tiny ViT's state dict; ``bias`` = {class: logit} with a zero head weight, or None for a
    random head (non-trivial relevance)."""
    from mmpretrain.registry import MODELS
    torch.manual_seed(seed)
    model = MODELS.build(TINY_MODEL)
    model.init_weights()
    head = model.head.layers.head
    with torch.no_grad():
        if bias is None:
            head.weight.normal_(0, 0.5)
            head.bias.normal_(0, 0.1)
        else:
            head.weight.zero_()
            head.bias.zero_()
            for cls, value in bias.items():
                head.bias[cls] = value
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path
