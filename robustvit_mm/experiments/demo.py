"""The built-in benchmark demo as library code (``tools/demo.py`` is its command line).

RobustViT moves a ViT's relevance from a background shortcut onto the object and raises its accuracy
when the background no longer matches the class. For each seed :func:`run_demo` generates the
benchmark (:mod:`robustvit_mm.datasets.synthetic`), pretrains a small ViT with plain cross-entropy on
the biased split, fine-tunes it on 3 masked images per class with plain CE (the control) and with
RobustViT, and evaluates every arm on the in-distribution test, the shifted test (the background always
belongs to another class) and the relevance-vs-mask segmentation test on the shifted split. Every
stage is mmengine's Runner on a config of ``configs/synthetic/`` (the same path as the stock
``tools/train.py`` / ``tools/test.py``); the fine-tunes start from the pretraining checkpoint and the
LAST fine-tuning checkpoint is evaluated (every arm gets the same number of steps). See docs/demo.md.

Seeds: 0-99 are for choosing the recipe (:data:`TUNING_SEEDS`), 100 and up are reported
(:data:`REPORTED_SEEDS`, the default); no recipe choice may look at a reported seed.
"""
import contextlib
import json
import logging
import os
import os.path as osp
import sys
import time
import uuid
from dataclasses import dataclass, field

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.hooks import Hook
from mmengine.runner import Runner

from .demo_report import (FIGURE_CLASSES, claims, draw_chart, draw_figure, format_claims,
                          format_table, summarize, write_report)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(REPO, 'configs', 'synthetic')

TUNING_SEEDS = range(0, 100)      # recipe choices are made on these only
REPORTED_SEEDS = range(100, 105)  # the default of the demo; what the README and docs/demo.md report
# Each seed runs in a process of its own with a FIXED torch thread count (another count gives other
# floating-point sums, so other numbers); WORKERS seeds run side by side, which changes only the time.
DEFAULT_THREADS = 1
DEFAULT_WORKERS = 2

# ---------------------------------------------------------------------------------------------
# What is run. An arm is a fine-tune config started from the pretrained checkpoint, optionally with
# config overrides (``--cfg-options`` style keys); 'pretrained' is the pretrained model itself. Adding
# an arm = one line here (+ one config if it is not an override of an existing one).
# ---------------------------------------------------------------------------------------------
PRETRAIN_CONFIG = 'vit-tiny-p4_pretrain_synthetic.py'
ROBUSTVIT_CONFIG = 'vit-tiny-p4_robustvit_synthetic.py'
ARMS = {
    'pretrained': None,
    'baseline_ce': 'vit-tiny-p4_ce-finetune_synthetic.py',        # plain CE (control)
    'robustvit': ROBUSTVIT_CONFIG,                                # the paper's method
    'robustvit_gt': 'vit-tiny-p4_robustvit-gt-ce_synthetic.py',   # GT-label CE ablation
    'gradmask': 'vit-tiny-p4_gradmask_synthetic.py',              # baselines (live penalty)
    'rrr': 'vit-tiny-p4_rrr_synthetic.py',
    # RobustViT loss ablations and the second-order variant (configs/baselines/README.md).
    'no_background': (ROBUSTVIT_CONFIG, {'model.relevance_loss.background_weight': 0.0}),
    'no_foreground': (ROBUSTVIT_CONFIG, {'model.relevance_loss.foreground_weight': 0.0}),
    'no_classification': (ROBUSTVIT_CONFIG, {'model.head.loss_weight': 0.0}),
    'create_graph': (ROBUSTVIT_CONFIG, {'model.create_graph': True}),
}
DEFAULT_ARMS = ('pretrained', 'baseline_ce', 'robustvit')
EVAL_CONFIGS = {
    'in_dist': 'vit-tiny-p4_eval-in-dist_synthetic.py',
    'shifted': 'vit-tiny-p4_eval-shifted-relevance_synthetic.py',  # top-1 + relevance seg, one pass
}

# Benchmark sizes (per class; 10 classes) and epochs. None: the generator's DEMO_RECIPE and the
# configs' epochs; QUICK is the CI smoke test (numbers meaningless).
FULL = dict(pretrain_per_class=None, masked_per_class=None, masked_val_per_class=None,
            test_per_class=None, pretrain_epochs=None, finetune_epochs=None)
QUICK = dict(pretrain_per_class=30, masked_per_class=2, masked_val_per_class=1,
             test_per_class=8, pretrain_epochs=1, finetune_epochs=2)


@dataclass
class DemoOptions:
    """What :func:`run_demo` runs (the options of tools/demo.py)."""
    out: str = 'work_dirs/demo'
    seeds: list = field(default_factory=lambda: list(REPORTED_SEEDS))
    arms: list = field(default_factory=lambda: list(DEFAULT_ARMS))
    quick: bool = False
    threads: int = DEFAULT_THREADS
    workers: int = DEFAULT_WORKERS
    pretrain_per_class: int = None
    pretrain_epochs: int = None
    finetune_epochs: int = None
    reuse_pretrained: bool = False
    verbose: bool = False
    command: str = 'python tools/demo.py'


# ---------------------------------------------------------------------------------------------
# Progress
# ---------------------------------------------------------------------------------------------
class Progress:
    """One line per stage, with the time since the demo started; a live epoch line on a terminal."""

    def __init__(self, start=None, live=True):
        self.start = time.time() if start is None else start   # shared with the seed processes
        self.stream = sys.stdout
        self.tty = live and self.stream.isatty()

    def elapsed(self):
        return time.time() - self.start

    def line(self, text):
        if self.tty:
            self.stream.write('\r\033[K')
        self.stream.write(f'[{self.elapsed():6.1f} s] {text}\n')
        self.stream.flush()

    def live(self, text):
        if self.tty:
            self.stream.write(f'\r\033[K[{self.elapsed():6.1f} s] {text}')
            self.stream.flush()


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

def arm_config(arm):
    """(config file name, overrides) of a fine-tune arm."""
    spec = ARMS[arm]
    return spec if isinstance(spec, tuple) else (spec, {})


def arm_description(arm):
    """'configs/synthetic/<file>' plus its overrides, for results.json."""
    config, overrides = arm_config(arm)
    text = f'configs/synthetic/{config}'
    return text + ''.join(f' {k}={v}' for k, v in overrides.items())


def load_config(name, data_root, work_dir, seed, args, load_from=None, overrides=None):
    from robustvit_mm.datasets.synthetic import set_data_root
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
    from robustvit_mm.relevance import gae_relevance
    from robustvit_mm.visualization import inputs_to_rgb
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
    import csv
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


def run_seed(seed, args, recipe, progress, want_figure=False):
    """Data, pretraining, the fine-tunes and the evaluation of every arm for one seed; returns
    (metrics per arm, stage times, checkpoints, figure panels or None)."""
    from robustvit_mm.datasets.synthetic import write_benchmark
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
    return results, times, {k: osp.relpath(v, args.out) for k, v in checkpoints.items()}, figure


def _seed_process(job):
    """One seed in its own process (a fresh interpreter: the numbers of a seed do not depend on
    which other seeds ran, nor on how many ran in parallel)."""
    seed, args, recipe, start, want_figure = job
    import robustvit_mm  # noqa: F401  (registers)
    with deterministic_torch(args.threads):
        return run_seed(seed, args, recipe, Progress(start, live=False), want_figure)


def run_seeds(seeds, args, recipe, progress):
    """Every seed in a process of its own, ``args.workers`` at a time."""
    import multiprocessing
    jobs = [(seed, args, recipe, progress.start, i == 0) for i, seed in enumerate(seeds)]
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


def cpu_time():
    """CPU seconds of this process and its finished children (the seed processes)."""
    import resource
    own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                          resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def demo_recipe(args):
    """The generated sizes and epochs of this run (DEMO_RECIPE, --quick, the explicit options)."""
    from robustvit_mm.datasets.synthetic import DEMO_RECIPE
    recipe = dict(QUICK if args.quick else FULL)
    recipe.update({k: v for k, v in DEMO_RECIPE.items() if recipe.get(k) is None})
    for key in ('pretrain_per_class', 'pretrain_epochs', 'finetune_epochs'):
        if getattr(args, key) is not None:
            recipe[key] = getattr(args, key)
    # One source of truth for the image size: the model of the pretraining config.
    pretrain = Config.fromfile(osp.join(CONFIG_DIR, PRETRAIN_CONFIG))
    recipe['image_size'] = int(pretrain.model.backbone.img_size)
    return recipe


def run_demo(args=None):
    """Run the demo described by ``args`` (:class:`DemoOptions`); write results.json, report.md,
    chart.png and figure.png under ``args.out``; return the results dict."""
    args = args or DemoOptions()
    if isinstance(args.arms, str):
        raise TypeError(f'arms must be a list of arm names, got the string {args.arms!r}')
    unknown = [a for a in args.arms if a not in ARMS]
    if unknown:
        raise ValueError(f'arms: unknown {unknown}; choose from {list(ARMS)}')
    if not args.seeds:
        raise ValueError('seeds: at least one seed is needed')
    if not args.threads or args.threads < 1 or not args.workers or args.workers < 1:
        raise ValueError(f'threads and workers must be >= 1, got {args.threads}, {args.workers}')
    args.arms = list(dict.fromkeys(['pretrained'] + list(args.arms)))
    args.out = osp.abspath(args.out)
    os.makedirs(args.out, exist_ok=True)
    import robustvit_mm  # noqa: F401  (registers; the configs import it too)
    recipe = demo_recipe(args)
    seeds = list(args.seeds)
    return _run(args, recipe, seeds)


def _run(args, recipe, seeds):
    from .machine import machine_info
    progress = Progress()
    load_start = os.getloadavg() if hasattr(os, 'getloadavg') else None
    tuning = [s for s in seeds if s in TUNING_SEEDS]
    progress.line(f'RobustViT demo: seeds {seeds}{" (tuning seeds)" if tuning else ""}, arms '
                  f'{args.arms}, out {args.out}{" (QUICK)" if args.quick else ""}, '
                  f'{args.workers} seed process(es) x {args.threads} thread(s)')
    outputs = run_seeds(seeds, args, recipe, progress)
    per_seed = {s: out[0] for s, out in outputs.items()}
    stage_times = {s: out[1] for s, out in outputs.items()}
    checkpoints = {s: out[2] for s, out in outputs.items()}
    figure_state = outputs[seeds[0]][3]

    summary = summarize(per_seed, args.arms, seeds)
    after_arm = 'robustvit' if 'robustvit' in args.arms else args.arms[-1]
    draw_figure(figure_state['panels'], figure_state['backgrounds'], 'pretrained', after_arm, args.out)
    draw_chart(summary, args.arms, seeds, args.out)
    wall = progress.elapsed()
    load_end = os.getloadavg() if hasattr(os, 'getloadavg') else None
    result = dict(
        command=args.command, quick=args.quick, seeds=seeds,
        seed_use='tuning' if tuning else 'reported (held out from tuning)',
        arms=summary, checks=claims(summary),
        wall_time_s=None if args.reuse_pretrained else wall,
        cpu_time_s=cpu_time(),   # all processes and threads: compares runs on a busy machine
        machine=dict(machine_info(), torch_threads=args.threads, seed_processes=args.workers),
        load_average=dict(start=[round(x, 2) for x in load_start] if load_start else None,
                          end=[round(x, 2) for x in load_end] if load_end else None),
        recipe=dict(recipe, threads=args.threads, workers=args.workers, deterministic=True,
                    configs=dict(pretrain=f'configs/synthetic/{PRETRAIN_CONFIG}',
                                 **{a: arm_description(a) for a in args.arms if ARMS[a] is not None},
                                 **{f'eval_{k}': f'configs/synthetic/{c}'
                                    for k, c in EVAL_CONFIGS.items()}),
                    evaluated_checkpoint='last'),
        stage_times_s={str(s): t for s, t in stage_times.items()},
        checkpoints={str(s): c for s, c in checkpoints.items()},
        figure=dict(path='figure.png', seed=figure_state['seed'], indices=figure_state['indices'],
                    classes=list(FIGURE_CLASSES), before='pretrained', after=after_arm))
    with open(osp.join(args.out, 'results.json'), 'w', encoding='utf-8') as f:
        json.dump(result, f, indent=2)
    write_report(osp.join(args.out, 'report.md'), result)

    print(f'\nMean ± std over {len(seeds)} seed(s){" (QUICK: numbers meaningless)" if args.quick else ""}:')
    print(format_table(summary, args.arms))
    if result['checks'] and not args.quick:
        print('\nChecks (paired over seeds):\n' + format_claims(result['checks'], markdown=False))
    timing = 'not measured (--reuse-pretrained)' if args.reuse_pretrained else f'{wall:.0f} s'
    print(f'\nwall time {timing}; wrote {args.out}/results.json, report.md, chart.png, figure.png')
    return result
