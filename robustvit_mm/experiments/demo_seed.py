"""One seed of the demo, in a process of its own: generate the benchmark, pretrain, fine-tune every
arm and evaluate it. Every stage is mmengine's Runner on a config of ``configs/synthetic/`` (the same
path as the stock ``tools/train.py`` / ``tools/test.py``); the fine-tunes start from the pretraining
checkpoint and the LAST fine-tuning checkpoint is evaluated (every arm gets the same number of
steps). A seed's outcome is a :class:`SeedResult`.
"""
import contextlib
import csv
import logging
import multiprocessing
import os.path as osp
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Dict, NamedTuple, Optional

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.hooks import Hook
from mmengine.runner import Runner

from ..datasets.synthetic import set_data_root, write_benchmark
from ..relevance import gae_relevance
from ..utils.progress import StageLog
from ..visualization import inputs_to_rgb
from .demo_options import ARMS, CONFIG_DIR, EVAL_CONFIGS, PRETRAIN_CONFIG, arm_config
from .demo_report import FIGURE_CLASSES


@dataclass
class SeedResult:
    """What one seed gives back to the demo."""
    metrics: Dict[str, Dict[str, float]]   # {arm: {metric: value}}
    stage_times: Dict[str, float]          # {'data' | 'train/<arm>' | 'eval/<arm>': seconds}
    checkpoints: Dict[str, str]            # {arm: checkpoint path relative to the demo's out}
    figure: Optional[dict]                 # the figure's panels (the first seed only), else None


# ---------------------------------------------------------------------------------------------
# Log noise and live progress
# ---------------------------------------------------------------------------------------------
class QuietStdout:
    """stdout minus mmengine's plain `print` of every checkpoint load (unless --verbose)."""
    DROP = ('Loads checkpoint by ',)

    def __init__(self, stream):
        self.stream = stream
        self.pending = ''

    def write(self, text):
        self.pending += text
        *lines, self.pending = self.pending.split('\n')
        for line in lines:
            if not line.startswith(self.DROP):
                self.stream.write(line + '\n')
        return len(text)

    def flush(self):
        self.stream.flush()

    def isatty(self):
        return False


class DropDeprecationNotices(logging.Filter):
    """mmengine's own deprecation notices about its file client (not about this project)."""

    def filter(self, record):
        message = record.getMessage()
        return not ('"FileClient" will be deprecated' in message
                    or '"HardDiskBackend" is the alias' in message)


def run_quietly(runner, method, verbose):
    """``runner.train()`` / ``runner.test()`` with the log noise filtered (unless verbose)."""
    if verbose:
        return getattr(runner, method)()
    runner.logger.addFilter(DropDeprecationNotices())
    with contextlib.redirect_stdout(QuietStdout(sys.stdout)):
        return getattr(runner, method)()


class EpochProgressHook(Hook):
    """Shows ``<stage> epoch e/E loss x`` live (terminals only); registered by the demo."""
    priority = 'VERY_LOW'

    def __init__(self, progress, label):
        self.progress = progress
        self.label = label

    def after_train_epoch(self, runner):
        loss = runner.message_hub.get_scalar('train/loss')
        text = f'{self.label}: epoch {runner.epoch}/{runner.max_epochs}'
        if loss is not None:
            text += f'  loss {loss.current():.3f}'
        self.progress.live(text)


# ---------------------------------------------------------------------------------------------
# Stages: all through mmengine's Runner on the configs of configs/synthetic/
# ---------------------------------------------------------------------------------------------
def load_config(name, data_root, work_dir, seed, args, load_from=None, overrides=None):
    cfg = Config.fromfile(osp.join(CONFIG_DIR, name))
    if overrides:
        cfg.merge_from_dict(overrides)
    set_data_root(cfg, data_root)
    cfg.work_dir = work_dir
    # Every random source from the seed (python, numpy, torch, the sampler), deterministic kernels.
    cfg.randomness = dict(seed=seed, diff_rank_seed=False, deterministic=True)
    cfg.log_level = 'INFO' if args.verbose else 'WARNING'
    # The seed processes are spawned; mmengine would otherwise warn and switch them to 'fork'.
    cfg.env_cfg = dict(cfg.get('env_cfg', {}), mp_cfg=dict(mp_start_method='spawn', opencv_num_threads=0))
    # A unique name: mmengine keeps loggers/visualizers by name, and names from a 1-s timestamp collide.
    cfg.experiment_name = f'{osp.splitext(name)[0]}_{uuid.uuid4().hex[:8]}'
    if load_from is not None:
        cfg.load_from = load_from
    return cfg


def set_max_epochs(cfg, epochs):
    """Train for ``epochs`` (schedulers that ended at the old last epoch end at the new one)."""
    old = cfg.train_cfg.max_epochs
    cfg.train_cfg.max_epochs = epochs
    schedulers = cfg.param_scheduler
    for sched in schedulers if isinstance(schedulers, (list, tuple)) else [schedulers]:
        if sched.get('end') == old:
            sched['end'] = epochs
    if cfg.train_cfg.get('val_interval', 1) > epochs:
        cfg.train_cfg.val_interval = epochs


RECIPE_KEYS = ('model', 'train_dataloader', 'optim_wrapper', 'param_scheduler', 'train_cfg',
               'randomness', 'load_from')


def check_same_recipe(cfg, dumped_config):
    """Refuse to reuse a checkpoint trained with another recipe (mmengine dumps the config it ran)."""
    if not osp.isfile(dumped_config):
        raise FileNotFoundError(f'--reuse-pretrained: {dumped_config} (the config of that run) is '
                                'missing, so the checkpoint cannot be checked; run without the flag')
    old = Config.fromfile(dumped_config)

    def recipe(c, key):   # where the data lives may differ (a copied --out); what it is may not
        value = c.get(key)
        if key == 'train_dataloader' and value is not None:
            value = value.to_dict()
            value['dataset'].pop('data_root', None)
        return value
    differ = [k for k in RECIPE_KEYS if recipe(old, k) != recipe(cfg, k)]
    if differ:
        raise ValueError(f'--reuse-pretrained: the checkpoint next to {dumped_config} was trained '
                         f'with other {", ".join(differ)} than the current config; run without the '
                         'flag (or with another --out)')


def train_stage(config, data_root, work_dir, seed, args, progress, label, epochs=None,
                load_from=None, overrides=None, reuse=False):
    """Train ``config`` (with ``overrides``); return the path of its LAST checkpoint (``reuse``: the
    existing one, if trained with the same recipe)."""
    cfg = load_config(config, data_root, work_dir, seed, args, load_from, overrides)
    if epochs:
        set_max_epochs(cfg, epochs)
    max_epochs = cfg.train_cfg.max_epochs
    ckpt = osp.join(work_dir, f'epoch_{max_epochs}.pth')
    if reuse:
        if not osp.isfile(ckpt):
            raise FileNotFoundError(f'--reuse-pretrained: {ckpt} does not exist; run without the flag')
        check_same_recipe(cfg, osp.join(work_dir, config))
        progress.line(f'{label}: reusing {ckpt}')
        return ckpt
    # One regular checkpoint, at the end (the best-val-loss one of the RobustViT configs is kept too).
    cfg.default_hooks.checkpoint.interval = max_epochs
    cfg.default_hooks.checkpoint.max_keep_ckpts = 1
    runner = Runner.from_cfg(cfg)
    runner.register_hook(EpochProgressHook(progress, label), priority='VERY_LOW')
    run_quietly(runner, 'train', args.verbose)
    if not osp.isfile(ckpt):
        raise RuntimeError(f'{label}: training ended without {ckpt}')
    return ckpt


def evaluate(config, data_root, work_dir, seed, args, checkpoint, figure_indices=None):
    """``runner.test()`` of an evaluation config on ``checkpoint``; optionally also the relevance of
    the figure samples (predicted class, as the segmentation test) with the loaded model."""
    cfg = load_config(config, data_root, work_dir, seed, args, load_from=checkpoint)
    runner = Runner.from_cfg(cfg)
    metrics = run_quietly(runner, 'test', args.verbose)
    figure = None
    if figure_indices:
        figure = figure_relevance(runner, figure_indices)
    return metrics, figure


def figure_relevance(runner, indices):
    """Images, masks, relevance maps and predictions of ``indices`` of the runner's test set."""
    model = runner.model
    model.eval()
    dataset = runner.test_dataloader.dataset
    data = model.data_preprocessor(pseudo_collate([dataset[i] for i in indices]), False)
    relevance, logits = gae_relevance(model, data['inputs'])   # top-1 class, as the seg test
    images = list(inputs_to_rgb(data['inputs'], model.data_preprocessor))
    masks = [np.asarray(s.fg_mask, dtype=np.float32) for s in data['data_samples']]
    labels = [int(s.gt_label[0]) for s in data['data_samples']]
    return dict(images=images, masks=masks, labels=labels,
                relevance=[r.detach().cpu().numpy()[0] for r in relevance],
                pred=logits.argmax(1).tolist())


def figure_sample_indices(data_root, classes=FIGURE_CLASSES):
    """Indices (in the sorted ImageNet-S-style shifted test set) of the first image of each class."""
    rows = []
    with open(osp.join(data_root, 'samples.csv'), newline='', encoding='utf-8') as f:
        for row in csv.DictReader(f):
            if row['split'] == 'test_shifted':
                rows.append(row)
    # ImageNetSMaskDataset lists sorted class folders then sorted files: the same order as written.
    rows.sort(key=lambda r: r['image'])
    indices, backgrounds = [], []
    for cls in classes:
        for i, row in enumerate(rows):
            if int(row['label']) == cls:
                indices.append(i)
                backgrounds.append(int(row['background_label']))
                break
    return indices, backgrounds


def run_seed(seed, args, recipe, progress, want_figure=False) -> SeedResult:
    """Data, pretraining, the fine-tunes and the evaluation of every arm for one seed."""
    seed_dir = osp.join(args.out, f'seed{seed}')
    data_root = osp.join(args.out, 'data', f'{"quick-" if args.quick else ""}seed{seed}')
    times = {}

    t0 = time.perf_counter()
    write_benchmark(data_root, seed=seed, image_size=recipe['image_size'],
                    pretrain_per_class=recipe['pretrain_per_class'],
                    masked_per_class=recipe['masked_per_class'],
                    masked_val_per_class=recipe['masked_val_per_class'],
                    test_per_class=recipe['test_per_class'], p_match=recipe['p_match'])
    times['data'] = time.perf_counter() - t0
    progress.line(f'seed {seed} | data       | {data_root} ({times["data"]:.1f} s)')

    checkpoints = {}
    t0 = time.perf_counter()
    checkpoints['pretrained'] = train_stage(
        PRETRAIN_CONFIG, data_root, osp.join(seed_dir, 'pretrained'), seed, args, progress,
        f'seed {seed} | pretrained | train', epochs=recipe['pretrain_epochs'],
        reuse=args.reuse_pretrained)
    times['train/pretrained'] = time.perf_counter() - t0
    progress.line(f'seed {seed} | pretrained | trained ({times["train/pretrained"]:.1f} s)')

    for arm in args.arms:
        if ARMS[arm] is None:
            continue
        t0 = time.perf_counter()
        config, overrides = arm_config(arm)
        checkpoints[arm] = train_stage(
            config, data_root, osp.join(seed_dir, arm), seed, args, progress,
            f'seed {seed} | {arm} | fine-tune', epochs=recipe['finetune_epochs'],
            load_from=checkpoints['pretrained'], overrides=overrides)
        times[f'train/{arm}'] = time.perf_counter() - t0
        progress.line(f'seed {seed} | {arm:<10} | fine-tuned ({times[f"train/{arm}"]:.1f} s)')

    figure = None
    if want_figure:
        indices, backgrounds = figure_sample_indices(data_root)
        figure = dict(seed=seed, indices=indices, backgrounds=backgrounds, panels={})
    results = {}
    for arm in args.arms:
        t0 = time.perf_counter()
        eval_dir = osp.join(seed_dir, arm, 'eval')
        m_in, _ = evaluate(EVAL_CONFIGS['in_dist'], data_root, osp.join(eval_dir, 'in_dist'), seed,
                           args, checkpoints[arm])
        m_sh, fig = evaluate(EVAL_CONFIGS['shifted'], data_root, osp.join(eval_dir, 'shifted'),
                             seed, args, checkpoints[arm],
                             figure['indices'] if want_figure else None)
        if fig is not None:
            figure['panels'][arm] = fig
        results[arm] = dict(in_dist_top1=float(m_in['accuracy/top1']),
                            shifted_top1=float(m_sh['accuracy/top1']),
                            relevance_miou=float(m_sh['seg/mIoU']),
                            relevance_pixacc=float(m_sh['seg/pixAcc']),
                            relevance_map=float(m_sh['seg/mAP']))
        times[f'eval/{arm}'] = time.perf_counter() - t0
        r = results[arm]
        progress.line(f'seed {seed} | {arm:<10} | in-dist {r["in_dist_top1"]:5.1f}  shifted '
                      f'{r["shifted_top1"]:5.1f}  mIoU {r["relevance_miou"]:5.1f} '
                      f'({times[f"eval/{arm}"]:.1f} s)')
    return SeedResult(metrics=results, stage_times=times,
                      checkpoints={k: osp.relpath(v, args.out) for k, v in checkpoints.items()},
                      figure=figure)


class SeedJob(NamedTuple):
    seed: int
    options: object        # DemoOptions
    recipe: dict
    start: float           # time.time() of the demo's start, for the progress lines
    want_figure: bool


def _seed_process(job: SeedJob) -> SeedResult:
    """One seed in its own process (a fresh interpreter: the numbers of a seed do not depend on
    which other seeds ran, nor on how many ran in parallel)."""
    with deterministic_torch(job.options.threads):
        return run_seed(job.seed, job.options, job.recipe, StageLog(job.start, live=False),
                        job.want_figure)


def run_seeds(seeds, args, recipe, progress):
    """Every seed in a process of its own, ``args.workers`` at a time: ``{seed: SeedResult}``."""
    jobs = [SeedJob(seed, args, recipe, progress.start, i == 0) for i, seed in enumerate(seeds)]
    context = multiprocessing.get_context('spawn')   # no fork of a process with torch threads
    with context.Pool(min(args.workers, len(seeds)), maxtasksperchild=1) as pool:
        outputs = pool.map(_seed_process, jobs, chunksize=1)
    return dict(zip(seeds, outputs))


@contextlib.contextmanager
def deterministic_torch(threads):
    """A fixed intra-op thread count and deterministic kernels for the demo; restored afterwards
    (the demo runs inside tests and notebooks too). The same command on the same machine then gives
    the same numbers; another thread count or CPU gives other ones (floating-point sums)."""
    old_threads, old_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


