"""The built-in benchmark demo as library code (``tools/demo.py`` is its command line).

RobustViT moves a ViT's relevance from a background shortcut onto the object and raises its accuracy
when the background no longer matches the class. For each seed :func:`run_demo` generates the
benchmark (:mod:`robustvit_mm.datasets.synthetic`), pretrains a small ViT with plain cross-entropy on
the biased split, fine-tunes it on 3 masked images per class with plain CE (the control) and with
RobustViT, and evaluates every arm on the in-distribution test, the shifted test (the background always
belongs to another class) and the relevance-vs-mask segmentation test on the shifted split. Every
stage is mmengine's Runner on a config of ``configs/synthetic/``; see docs/demo.md.
"""
import contextlib
import json
import logging
import math
import os
import os.path as osp
import platform
import shutil
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
from mmengine.visualization import Visualizer

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(REPO, 'configs', 'synthetic')

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
    # name -> (config, metric keys read from runner.test())
    'in_dist': 'vit-tiny-p4_eval-in-dist_synthetic.py',
    'shifted': 'vit-tiny-p4_eval-shifted-relevance_synthetic.py',  # top-1 + relevance seg, one pass
}
METRICS = ('in_dist_top1', 'shifted_top1', 'relevance_miou')
METRIC_TITLES = {
    'in_dist_top1': 'in-distribution top-1 (%)',
    'shifted_top1': 'shifted top-1 (%)',
    'relevance_miou': 'relevance mIoU vs mask (%)',
}

# Benchmark sizes (per class; 10 classes) and epochs. The full recipe (the generator's DEMO_RECIPE,
# the configs' epochs); --quick is the CI smoke test.
FULL = dict(pretrain_per_class=None, masked_per_class=None, masked_val_per_class=None,
            test_per_class=None, pretrain_epochs=None, finetune_epochs=None)  # None: the defaults
QUICK = dict(pretrain_per_class=30, masked_per_class=2, masked_val_per_class=1,
             test_per_class=8, pretrain_epochs=1, finetune_epochs=2)
FIGURE_CLASSES = (0, 3, 5, 8)   # the first shifted test image of each: fixed, not picked by outcome


# ---------------------------------------------------------------------------------------------
# Progress
# ---------------------------------------------------------------------------------------------
class Progress:
    """One line per stage, with the time since the demo started; a live epoch line on a terminal."""

    def __init__(self):
        self.start = time.perf_counter()
        self.stream = sys.stdout
        self.tty = self.stream.isatty()

    def elapsed(self):
        return time.perf_counter() - self.start

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
    cfg.randomness = dict(seed=seed, deterministic=False)
    cfg.log_level = 'INFO' if args.verbose else 'WARNING'
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


def figure_sample_indices(data_root, num_classes_seen=FIGURE_CLASSES):
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
    for cls in num_classes_seen:
        for i, row in enumerate(rows):
            if int(row['label']) == cls:
                indices.append(i)
                backgrounds.append(int(row['background_label']))
                break
    return indices, backgrounds


def run_seed(seed, args, recipe, progress, figure_state):
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

    want_figure = not figure_state
    if want_figure:
        indices, backgrounds = figure_sample_indices(data_root)
        figure_state.update(seed=seed, indices=indices, backgrounds=backgrounds, panels={})
    results = {}
    for arm in args.arms:
        t0 = time.perf_counter()
        eval_dir = osp.join(seed_dir, arm, 'eval')
        m_in, _ = evaluate(EVAL_CONFIGS['in_dist'], data_root, osp.join(eval_dir, 'in_dist'), seed,
                           args, checkpoints[arm])
        m_sh, fig = evaluate(EVAL_CONFIGS['shifted'], data_root, osp.join(eval_dir, 'shifted'),
                             seed, args, checkpoints[arm],
                             figure_state['indices'] if want_figure else None)
        if fig is not None:
            figure_state['panels'][arm] = fig
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
    return results, times, {k: osp.relpath(v, args.out) for k, v in checkpoints.items()}


# ---------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------
def mean_std(values):
    values = np.asarray(values, dtype=np.float64)
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return float(values.mean()), std


def summarize(per_seed, arms, seeds):
    summary = {}
    for arm in arms:
        entry = {}
        for key in METRICS + ('relevance_pixacc', 'relevance_map'):
            values = [per_seed[s][arm][key] for s in seeds]
            mean, std = mean_std(values)
            entry[key] = mean
            entry[f'{key}_std'] = std
            entry.setdefault('per_seed', {})[key] = values
        summary[arm] = entry
    return summary


def format_table(summary, arms, markdown=False):
    head = ['arm'] + [METRIC_TITLES[k] for k in METRICS]
    rows = [[arm] + [f'{summary[arm][k]:.1f} ± {summary[arm][k + "_std"]:.1f}' for k in METRICS]
            for arm in arms]
    if markdown:
        lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
        lines += ['| ' + ' | '.join(r) + ' |' for r in rows]
        return '\n'.join(lines)
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    fmt = lambda r: '  '.join(c.ljust(w) for c, w in zip(r, widths))  # noqa: E731
    return '\n'.join([fmt(head), '  '.join('-' * w for w in widths)] + [fmt(r) for r in rows])


def format_per_seed(summary, arms, seeds):
    head = ['arm', 'metric'] + [f'seed {s}' for s in seeds]
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for arm in arms:
        for key in METRICS:
            vals = summary[arm]['per_seed'][key]
            lines.append('| ' + ' | '.join([arm, key] + [f'{v:.1f}' for v in vals]) + ' |')
    return '\n'.join(lines)


def acceptance(summary, wall_time, quick):
    """The issue's acceptance criteria that the demo's numbers decide (None: arms missing)."""
    need = {'pretrained', 'baseline_ce', 'robustvit'}
    if not need <= set(summary):
        return []
    pre, ce, rv = summary['pretrained'], summary['baseline_ce'], summary['robustvit']
    gap = pre['in_dist_top1'] - pre['shifted_top1']
    diffs = [r - c for r, c in zip(rv['per_seed']['shifted_top1'], ce['per_seed']['shifted_top1'])]
    checks = [
        ('pretrained in-distribution top-1 >= 90', f'{pre["in_dist_top1"]:.1f}',
         pre['in_dist_top1'] >= 90),
        ('pretrained shifted top-1 at least 25 points lower', f'{gap:.1f} points lower', gap >= 25),
        ('robustvit shifted top-1 - baseline_ce >= 3 (mean)',
         f'{rv["shifted_top1"] - ce["shifted_top1"]:+.1f}',
         rv['shifted_top1'] - ce['shifted_top1'] >= 3),
        ('no seed: robustvit shifted top-1 more than 2 below baseline_ce',
         'per seed ' + ', '.join(f'{d:+.1f}' for d in diffs), min(diffs) >= -2),
        ('robustvit relevance mIoU - baseline_ce >= 3 (mean)',
         f'{rv["relevance_miou"] - ce["relevance_miou"]:+.1f}',
         rv['relevance_miou'] - ce['relevance_miou'] >= 3),
        ('robustvit in-distribution top-1 >= 75 on every seed',
         'min ' + f'{min(rv["per_seed"]["in_dist_top1"]):.1f}',
         min(rv['per_seed']['in_dist_top1']) >= 75),
        ('whole demo <= 10 min', 'not measured (--reuse-pretrained)' if wall_time is None else
         f'{wall_time / 60:.1f} min', wall_time is not None and wall_time <= 600),
        ('stretch: robustvit shifted top-1 > pretrained',
         f'{rv["shifted_top1"] - pre["shifted_top1"]:+.1f}',
         rv['shifted_top1'] > pre['shifted_top1']),
    ]
    return [dict(criterion=c, value=v, met=bool(ok)) for c, v, ok in checks]


def machine_info(threads):
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            for line in f:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    import mmengine
    import mmpretrain
    return dict(cpu=cpu, cores=usable, torch_threads=threads, gpu=False,
                platform=platform.platform(), python=platform.python_version(),
                torch=torch.__version__, mmengine=mmengine.__version__,
                mmpretrain=mmpretrain.__version__)


def draw_chart(summary, arms, seeds, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4), dpi=120)
    width = 0.8 / len(arms)
    x = np.arange(len(METRICS))
    colours = {'pretrained': '#9e9e9e', 'baseline_ce': '#4c72b0', 'robustvit': '#dd8452',
               'robustvit_gt': '#55a868'}
    for i, arm in enumerate(arms):
        means = [summary[arm][k] for k in METRICS]
        stds = [summary[arm][k + '_std'] for k in METRICS]
        pos = x - 0.4 + width * (i + 0.5)
        ax.bar(pos, means, width * 0.95, yerr=stds, capsize=3, label=arm,
               color=colours.get(arm), alpha=0.9)
        for j, key in enumerate(METRICS):
            ax.scatter([pos[j]] * len(seeds), summary[arm]['per_seed'][key], s=8, color='black',
                       zorder=3)
    ax.set_xticks(x)
    ax.set_xticklabels([METRIC_TITLES[k] for k in METRICS])
    ax.set_ylim(0, 100)
    ax.set_ylabel('%')
    ax.set_title(f'Synthetic spurious-background benchmark: mean ± std over {len(seeds)} seed(s)')
    ax.legend(loc='lower left', fontsize=8)
    ax.grid(axis='y', alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _text(img, text, org, scale=0.4, colour=(255, 255, 255)):
    import cv2
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def draw_figure(figure_state, before_arm, after_arm, out_dir):
    """Rows: shifted test image | mask | relevance before | relevance after; through the visualizer."""
    import cv2
    from robustvit_mm.visualization.overlay import hstack_panels, overlay, vstack_rows
    before = figure_state['panels'][before_arm]
    after = figure_state['panels'][after_arm]
    scale = max(1, 128 // before['images'][0].shape[0])   # panels of about 128 px
    up = lambda im: cv2.resize(im, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)  # noqa
    rows = []
    for i, image in enumerate(before['images']):
        mask = (np.clip(before['masks'][i], 0, 1) * 255).astype(np.uint8)
        panels = [up(image), up(np.repeat(mask[..., None], 3, axis=2)),
                  up(overlay(image, before['relevance'][i])), up(overlay(image, after['relevance'][i]))]
        _text(panels[0], f'class {before["labels"][i]}', (3, 12))
        _text(panels[0], f'bg {figure_state["backgrounds"][i]}', (3, panels[0].shape[0] - 5))
        for p, res in ((panels[2], before), (panels[3], after)):
            ok = res['pred'][i] == res['labels'][i]
            _text(p, f'pred {res["pred"][i]}', (3, 12), colour=(120, 255, 120) if ok else (255, 110, 110))
        rows.append(hstack_panels(panels))
    grid = vstack_rows(rows)
    header = np.full((22, grid.shape[1], 3), 255, np.uint8)
    titles = ['shifted image', 'mask', f'before ({before_arm})', f'after ({after_arm})']
    step = grid.shape[1] / 4
    for j, t in enumerate(titles):
        cv2.putText(header, t, (int(j * step) + 3, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.37, (0, 0, 0), 1,
                    cv2.LINE_AA)
    image = np.concatenate([header, grid], axis=0)
    vis = Visualizer(name=f'demo_figure_{uuid.uuid4().hex[:8]}',
                     vis_backends=[dict(type='LocalVisBackend')], save_dir=osp.join(out_dir, 'vis'))
    vis.add_image('relevance_shifted', image, step=0)
    written = osp.join(out_dir, 'vis', 'vis_data', 'vis_image', 'relevance_shifted_0.png')
    target = osp.join(out_dir, 'figure.png')
    shutil.copyfile(written, target)
    return target


def write_report(path, result, table_md, per_seed_md, checks, args):
    lines = [
        '# RobustViT demo on the synthetic spurious-background benchmark', '',
        f'Command: `{result["command"]}`  ',
        f'Seeds: {result["seeds"]}; {"QUICK smoke run (numbers meaningless)" if args.quick else "full recipe"}  ',
        f'Wall time: {result["wall_time_s"]:.0f} s ({result["wall_time_s"] / 60:.1f} min)  ',
        f'Machine: {result["machine"]["cpu"]}, {result["machine"]["cores"]} usable cores, '
        f'{result["machine"]["torch_threads"]} torch threads, no GPU; load average at start / end '
        f'{result["load_average"]["start"]} / {result["load_average"]["end"]}  ',
        'Evaluated checkpoint: the LAST of each fine-tune (same number of steps for every arm)', '',
        '## Mean ± std over seeds', '', table_md, '',
        '## Per seed', '', per_seed_md, '',
    ]
    if checks:
        lines += ['## Acceptance (issue)', '', '| criterion | value | met |', '|---|---|---|']
        lines += [f'| {c["criterion"]} | {c["value"]} | {"yes" if c["met"] else "NO"} |'
                  for c in checks]
        lines.append('')
    lines += ['## Pictures', '', '![chart](chart.png)', '',
              f'![figure](figure.png): first shifted test image of classes {list(FIGURE_CLASSES)} '
              f'(seed {result["figure"]["seed"]}), relevance of the predicted class.', '',
              '## Time per stage (s, summed over seeds)', '']
    totals = {}
    for times in result['stage_times_s'].values():
        for k, v in times.items():
            totals[k] = totals.get(k, 0.0) + v
    lines += [f'- {k}: {v:.1f}' for k, v in totals.items()]
    with open(path, 'w', encoding='utf-8') as f:
        f.write('\n'.join(lines) + '\n')


@dataclass
class DemoOptions:
    """What :func:`run_demo` runs (the options of tools/demo.py)."""
    out: str = 'work_dirs/demo'
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    arms: list = field(default_factory=lambda: list(DEFAULT_ARMS))
    quick: bool = False
    threads: int = None
    pretrain_per_class: int = None
    pretrain_epochs: int = None
    finetune_epochs: int = None
    reuse_pretrained: bool = False
    verbose: bool = False
    command: str = 'python tools/demo.py'


def run_demo(args):
    """Run the demo described by ``args`` (:class:`DemoOptions`); write results.json, report.md,
    chart.png and figure.png under ``args.out``; return the results dict."""
    unknown = [a for a in args.arms if a not in ARMS]
    if unknown:
        raise ValueError(f'arms: unknown {unknown}; choose from {list(ARMS)}')
    args.arms = list(dict.fromkeys(['pretrained'] + list(args.arms)))
    progress = Progress()
    load_start = os.getloadavg() if hasattr(os, 'getloadavg') else None
    threads = args.threads or min(2, os.cpu_count() or 1)
    torch.set_num_threads(threads)
    args.out = osp.abspath(args.out)
    os.makedirs(args.out, exist_ok=True)
    from robustvit_mm.datasets.synthetic import DEMO_RECIPE
    recipe = dict(QUICK if args.quick else FULL)
    recipe.update({k: v for k, v in DEMO_RECIPE.items() if recipe.get(k) is None})
    for key in ('pretrain_per_class', 'pretrain_epochs', 'finetune_epochs'):
        if getattr(args, key) is not None:
            recipe[key] = getattr(args, key)
    # One source of truth for the image size: the model of the pretraining config.
    recipe['image_size'] = int(Config.fromfile(osp.join(CONFIG_DIR, PRETRAIN_CONFIG)).model.backbone.img_size)

    seeds = list(args.seeds)
    progress.line(f'RobustViT demo: seeds {seeds}, arms {args.arms}, out {args.out}'
                  f'{" (QUICK)" if args.quick else ""}, {threads} thread(s)')
    per_seed, stage_times, checkpoints, figure_state = {}, {}, {}, {}
    for seed in seeds:
        per_seed[seed], stage_times[seed], checkpoints[seed] = run_seed(
            seed, args, recipe, progress, figure_state)
    wall = progress.elapsed()

    summary = summarize(per_seed, args.arms, seeds)
    after_arm = 'robustvit' if 'robustvit' in args.arms else args.arms[-1]
    figure_path = draw_figure(figure_state, 'pretrained', after_arm, args.out)
    draw_chart(summary, args.arms, seeds, osp.join(args.out, 'chart.png'))
    wall = progress.elapsed()
    checks = acceptance(summary, None if args.reuse_pretrained else wall, args.quick)

    load_end = os.getloadavg() if hasattr(os, 'getloadavg') else None
    result = dict(
        command=args.command,
        quick=args.quick, seeds=seeds, arms=summary, wall_time_s=wall,
        machine=machine_info(threads),
        load_average=dict(start=[round(x, 2) for x in load_start] if load_start else None,
                          end=[round(x, 2) for x in load_end] if load_end else None),
        recipe=dict(recipe, configs=dict(pretrain=f'configs/synthetic/{PRETRAIN_CONFIG}',
                                         **{a: arm_description(a) for a in args.arms
                                            if ARMS[a] is not None},
                                         **{f'eval_{k}': f'configs/synthetic/{c}'
                                            for k, c in EVAL_CONFIGS.items()}),
                    evaluated_checkpoint='last'),
        stage_times_s={str(s): t for s, t in stage_times.items()},
        checkpoints={str(s): c for s, c in checkpoints.items()},
        figure=dict(path='figure.png', seed=figure_state['seed'], indices=figure_state['indices'],
                    classes=list(FIGURE_CLASSES), before='pretrained', after=after_arm),
        acceptance=checks)
    with open(osp.join(args.out, 'results.json'), 'w', encoding='utf-8') as f:
        json.dump(result, f, indent=2)
    table = format_table(summary, args.arms)
    write_report(osp.join(args.out, 'report.md'), result, format_table(summary, args.arms, True),
                 format_per_seed(summary, args.arms, seeds), checks, args)

    print()
    print(f'Mean ± std over {len(seeds)} seed(s){" (QUICK: numbers meaningless)" if args.quick else ""}:')
    print(table)
    if checks and not args.quick:
        print()
        for c in checks:
            print(f'  [{"x" if c["met"] else " "}] {c["criterion"]}: {c["value"]}')
    print(f'\nwall time {wall:.0f} s; wrote {args.out}/results.json, report.md, chart.png, '
          f'figure.png ({osp.relpath(figure_path, args.out)})')
    return result

