"""Robustness report: evaluate models on every shifted set found under a data root and compare them.

    python tools/robustness_report.py --data-root data --protocol paper --out work_dirs/report \
        --model pretrained configs/robustvit/vit-base-p16_robustvit_imagenet-s.py checkpoints/vit-base-p16_in1k.pth \
        --model robustvit  configs/robustvit/vit-base-p16_robustvit_imagenet-s.py work_dirs/.../best.pth

Each ``--model NAME CONFIG CHECKPOINT`` is any mmpretrain model config (only its ``model`` and its
normalisation are used) and a checkpoint. Each set present under ``--data-root`` (conventional folder
names below) is evaluated with the provided ``configs/robustness/<set>[_standard].py``, through
mmengine's ``Runner.from_cfg(cfg).test()``: the path of the stock ``tools/test.py``. A missing set gets
one clear line. Runs done elsewhere merge in with ``--results NAME SET JSON``, the metrics file of
``test.py CONFIG CKPT --out results.json --out-item metrics`` (SET is a set key, e.g. ``objectnet``).

Writes ``report.md``, ``report.csv`` (rows = set and metric, columns = models, then the change of each
model against the first) and ``report.png`` (bar chart) to ``--out``, plus each run's metrics as
``results/<model>__<set>.json`` (the same format, so they can be merged again); prints the table.

Sets (key: folder under --data-root):
    imagenet-val: imagenet/val              imagenet-a: imagenet-a        imagenet-r: imagenet-r
    imagenet-sketch: sketch                 imagenet-v2: imagenetv2-matched-frequency-format-val
    objectnet: objectnet-1.0                si-score-{area,location,rotation}:
    si-score/{area,location20_area02_min0pc,rotation}          imagenet-segmentation: gtsegs_ijcv.mat

Protocols (docs/evaluation.md): ``paper`` = 1000-way argmax, ObjectNet first mapped class, no border
crop, mean = std = 0.5 for every model; ``standard`` = IN-A/IN-R 200-class argmax, ObjectNet 113-class
argmax with any mapped class counting and a 3-px border crop, each model's native normalisation
(its config's ``model.data_preprocessor``, else its top-level ``data_preprocessor``).
"""
import argparse
import copy
import csv
import datetime
import json
import os
import os.path as osp
import sys
import traceback
import uuid
from collections import namedtuple

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG_DIR = osp.join(REPO, 'configs', 'robustness')

PROTOCOLS = {
    'paper': '1000-way argmax everywhere; ObjectNet scored against its first mapped ImageNet class, '
             'no border crop; Resize 256 -> CenterCrop 224; mean = std = 0.5 for every model '
             '(what the released RobustViT code did).',
    'standard': 'ImageNet-A / ImageNet-R argmax restricted to their 200 classes (the fixed published '
                'lists); ObjectNet argmax restricted to the ImageNet classes of its 113 overlapping '
                'classes, any mapped class counts, 3-px border crop; each model\'s native '
                'normalisation.',
}
PAPER_NORM = dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5], to_rgb=True)

EvalSet = namedtuple('EvalSet', 'key title path dataset_root metrics')
ACCURACY = (('top1', 'top-1 acc.'), )
TOP5 = (('top5', 'top-5 acc.'), )
SEGMENTATION = (('pixAcc', 'pixel acc.'), ('mIoU', 'mIoU'), ('mAP', 'mAP'))
SETS = (
    # path: what must exist under --data-root; dataset_root: the dataset's data_root there
    EvalSet('imagenet-val', 'ImageNet val', 'imagenet/val', 'imagenet', ACCURACY),
    EvalSet('imagenet-a', 'ImageNet-A', 'imagenet-a', 'imagenet-a', ACCURACY),
    EvalSet('imagenet-r', 'ImageNet-R', 'imagenet-r', 'imagenet-r', ACCURACY),
    EvalSet('imagenet-sketch', 'ImageNet-Sketch', 'sketch', 'sketch', ACCURACY),
    EvalSet('imagenet-v2', 'ImageNet-V2', 'imagenetv2-matched-frequency-format-val',
            'imagenetv2-matched-frequency-format-val', ACCURACY),
    EvalSet('objectnet', 'ObjectNet', 'objectnet-1.0', 'objectnet-1.0', ACCURACY),
    EvalSet('si-score-area', 'SI-Score size', 'si-score/area', 'si-score', ACCURACY),
    EvalSet('si-score-location', 'SI-Score location', 'si-score/location20_area02_min0pc',
            'si-score', ACCURACY),
    EvalSet('si-score-rotation', 'SI-Score rotation', 'si-score/rotation', 'si-score', ACCURACY),
    EvalSet('imagenet-segmentation', 'ImageNet-segmentation', 'gtsegs_ijcv.mat', '',
            SEGMENTATION),
)
SET_BY_KEY = {s.key: s for s in SETS}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Evaluate models on the shifted ImageNet sets and the relevance-segmentation '
        'test; write report.md / report.csv / report.png.',
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument('--model', nargs=3, action='append', default=[],
                        metavar=('NAME', 'CONFIG', 'CHECKPOINT'),
                        help='a model to evaluate (repeatable; the first is the baseline)')
    parser.add_argument('--results', nargs=3, action='append', default=[],
                        metavar=('NAME', 'SET', 'JSON'),
                        help='merge metrics written by `test.py ... --out X.json --out-item metrics`')
    parser.add_argument('--data-root', help='folder holding the sets under their usual names')
    parser.add_argument('--protocol', choices=tuple(PROTOCOLS), default='paper')
    parser.add_argument('--out', default='work_dirs/robustness_report', help='output folder')
    parser.add_argument('--sets', help='comma-separated set keys to consider (default: all)')
    parser.add_argument('--top5', action='store_true', help='also report top-5 accuracy')
    parser.add_argument('--batch-size', type=int, help='override the test batch size')
    parser.add_argument('--num-workers', type=int, help='override the dataloader workers')
    parser.add_argument('--config-dir', default=CONFIG_DIR,
                        help='where the per-set robustness configs are')
    parser.add_argument('--verbose', action='store_true', help='full mmengine logging')
    args = parser.parse_args(argv)
    if not args.model and not args.results:
        parser.error('give at least one --model or --results')
    if args.model and not args.data_root:
        parser.error('--model needs --data-root')
    for name, set_key, _ in args.results:
        if set_key not in SET_BY_KEY:
            parser.error(f'--results {name} {set_key}: unknown set; one of {", ".join(SET_BY_KEY)}')
    if args.sets:
        unknown = [s for s in args.sets.split(',') if s not in SET_BY_KEY]
        if unknown:
            parser.error(f'--sets: unknown {unknown}; one of {", ".join(SET_BY_KEY)}')
    return args


# ------------------------------------------------------------------------------------ evaluation
def set_config_path(config_dir, eval_set, protocol):
    name = eval_set.key + ('_standard' if protocol == 'standard' else '')
    return osp.join(config_dir, f'{name}.py')


def apply_normalisation(cfg, model_cfg, protocol):
    """Paper: mean = std = 127.5 for every model. Standard: the model config's own. Returns a text."""
    own = cfg.model.get('data_preprocessor')
    if protocol == 'paper':
        cfg.data_preprocessor = dict(num_classes=1000, **copy.deepcopy(PAPER_NORM))
        if own:
            own.update(copy.deepcopy(PAPER_NORM))
        return 'mean = std = 127.5 (paper)'
    if own:
        norm = own
    elif model_cfg.get('data_preprocessor'):
        norm = cfg.data_preprocessor = copy.deepcopy(model_cfg.data_preprocessor)
    else:
        norm = cfg.data_preprocessor
        print(f'  note: the model config sets no data_preprocessor; using mean '
              f'{list(norm.get("mean", []))} std {list(norm.get("std", []))}')
    return f'mean {list(norm.get("mean", []))} std {list(norm.get("std", []))} (native)'


def _predictions_only(model):
    """Switch off a fine-tuning validation loss computed inside ``predict`` (RobustViT's
    ``RelevanceGuided*Classifier(val_loss=True)``): evaluation needs only the predictions, and that
    loss needs ground-truth labels the segmentation set does not have."""
    import inspect
    from mmpretrain.registry import MODELS
    model_cls = MODELS.get(model.get('type', '')) if isinstance(model.get('type'), str) else None
    if model_cls is not None and 'val_loss' in inspect.signature(model_cls.__init__).parameters:
        model.val_loss = False


def build_test_config(eval_set, protocol, model_config, checkpoint, data_root, work_dir, args):
    """The set's provided config with the model (and its normalisation) of ``model_config``."""
    from mmengine.config import Config
    path = set_config_path(args.config_dir, eval_set, protocol)
    if not osp.isfile(path):
        raise FileNotFoundError(f'no config {path} for {eval_set.key} ({protocol} protocol)')
    cfg = Config.fromfile(path)
    model_cfg = Config.fromfile(model_config)
    cfg.model = copy.deepcopy(model_cfg.model)
    _predictions_only(cfg.model)
    norm = apply_normalisation(cfg, model_cfg, protocol)
    imports = list(cfg.get('custom_imports', {}).get('imports', []))
    for name in model_cfg.get('custom_imports', {}).get('imports', []):
        if name not in imports:
            imports.append(name)
    cfg.custom_imports = dict(imports=imports, allow_failed_imports=False)

    loader = cfg.test_dataloader
    loader.dataset.data_root = osp.join(data_root, eval_set.dataset_root) if eval_set.dataset_root \
        else data_root
    if args.batch_size:
        loader.batch_size = args.batch_size
    if args.num_workers is not None:
        loader.num_workers = args.num_workers
    if loader.get('num_workers', 0) == 0:
        loader.persistent_workers = False
    import torch
    loader.setdefault('pin_memory', torch.cuda.is_available())
    cfg.load_from = checkpoint
    cfg.work_dir = work_dir
    cfg.launcher = 'none'
    cfg.experiment_name = f'{osp.basename(work_dir)}_{uuid.uuid4().hex[:8]}'
    if not args.verbose:
        cfg.log_level = 'WARNING'
    return cfg, norm


def _progress_hook(desc):
    from mmengine.hooks import Hook
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None

    class Progress(Hook):
        def before_test_epoch(self, runner):
            total = len(runner.test_dataloader)
            if tqdm is not None:
                self.bar = tqdm(total=total, desc=desc, unit='batch', file=sys.stderr)
            else:
                from mmengine.utils import ProgressBar
                self.bar = ProgressBar(total)

        def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            self.bar.update(1)

        def after_test_epoch(self, runner, metrics=None):
            if hasattr(self.bar, 'close'):
                self.bar.close()
            else:
                sys.stdout.write('\n')

    return Progress()


def run_evaluation(cfg, desc):
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg)
    runner.register_hook(_progress_hook(desc), priority='VERY_LOW')
    return {k: float(v) for k, v in runner.test().items()}


# --------------------------------------------------------------------------------------- results
def metric_key(eval_set, protocol, metric):
    return f'{eval_set.key}_{protocol}/{metric}'


def load_results(path, eval_set, protocol):
    """Metrics of ``eval_set`` from a ``test.py --out X.json --out-item metrics`` file."""
    with open(path, encoding='utf-8') as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f'{path}: expected the metrics dict that test.py writes with --out-item '
                         f'metrics, got {type(data).__name__}')
    prefix = f'{eval_set.key}_{protocol}/'
    found = {k: float(v) for k, v in data.items() if k.startswith(prefix)}
    if not found:
        other = [p for p in PROTOCOLS if p != protocol
                 and any(k.startswith(f'{eval_set.key}_{p}/') for k in data)]
        if other:
            raise ValueError(f'{path}: {eval_set.key} was evaluated under the {other[0]} protocol; '
                             f'this report uses the {protocol} protocol')
        raise ValueError(f'{path}: no {prefix}* metrics (keys: {", ".join(sorted(data)) or "none"})')
    return found


def table_rows(results, models, protocol, top5=False):
    """``[(set title, metric label, [value or None per model])]`` for every set with a value."""
    rows = []
    for eval_set in SETS:
        metrics = eval_set.metrics + (TOP5 if top5 and eval_set.metrics is ACCURACY else ())
        for metric, label in metrics:
            key = metric_key(eval_set, protocol, metric)
            values = [results.get(m, {}).get(eval_set.key, {}).get(key) for m in models]
            if any(v is not None for v in values):
                rows.append((eval_set.title, label, values))
    return rows


def _fmt(value, signed=False):
    if value is None:
        return '–'
    return f'{value:+.2f}' if signed else f'{value:.2f}'


def _deltas(values):
    base = values[0]
    return [None if base is None or v is None else v - base for v in values[1:]]


def markdown_table(rows, models):
    head = ['Set', 'Metric (%)', *models, *[f'Δ {m} − {models[0]}' for m in models[1:]]]
    lines = ['| ' + ' | '.join(head) + ' |',
             '|' + '|'.join(['---', '---'] + ['---:'] * (len(head) - 2)) + '|']
    for title, label, values in rows:
        cells = [title, label, *[_fmt(v) for v in values],
                 *[_fmt(d, signed=True) for d in _deltas(values)]]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def write_csv(path, rows, models):
    with open(path, 'w', newline='', encoding='utf-8') as f:
        writer = csv.writer(f)
        writer.writerow(['set', 'metric', *models, *[f'delta_{m}' for m in models[1:]]])
        for title, label, values in rows:
            writer.writerow([title, label,
                             *['' if v is None else f'{v:.4f}' for v in values],
                             *['' if d is None else f'{d:+.4f}' for d in _deltas(values)]])


def write_chart(path, rows, models, protocol):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np

    labels = [f'{title}, {label}' for title, label, _ in rows]
    x = np.arange(len(rows))
    width = 0.8 / max(1, len(models))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 * len(rows) + 2), 5.0))
    for i, model in enumerate(models):
        values = [np.nan if v[i] is None else v[i] for _, _, v in rows]
        bars = ax.bar(x + (i - (len(models) - 1) / 2) * width, values, width, label=model)
        ax.bar_label(bars, labels=['' if np.isnan(v) else f'{v:.1f}' for v in values],
                     fontsize=7, padding=1)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, fontsize=8, rotation=30, ha='right')
    ax.set_ylabel('%')
    ax.set_title(f'Robustness ({protocol} protocol)')
    ax.legend(fontsize=8)
    ax.margins(y=0.12)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_markdown(path, table, protocol, model_lines, notes):
    when = datetime.datetime.now().strftime('%Y-%m-%d %H:%M')
    text = [
        '# Robustness report', '',
        f'Protocol: **{protocol}**: {PROTOCOLS[protocol]}', '',
        'Accuracies are top-1 percentages; the segmentation rows are the relevance-as-segmentation '
        'test (relevance of the predicted class thresholded at its per-image mean; pixel accuracy '
        'and mIoU pooled over the dataset, mAP averaged over images).', '',
        table, '', '## Models', '', *model_lines, '',
    ]
    if notes:
        text += ['## Notes', '', *notes, '']
    text += [f'Written by tools/robustness_report.py on {when}.', '']
    with open(path, 'w', encoding='utf-8') as f:
        f.write('\n'.join(text))


# ------------------------------------------------------------------------------------------ main
def main(argv=None):
    args = parse_args(argv)
    import robustvit_mm  # noqa: F401  (registers the plugin; local checkpoint loading)

    os.makedirs(osp.join(args.out, 'results'), exist_ok=True)
    wanted = args.sets.split(',') if args.sets else [s.key for s in SETS]
    models, results, notes, failed = [], {}, [], False
    model_lines = {}

    def add_model(name):
        if name not in models:
            models.append(name)
            results[name] = {}

    for name, config, checkpoint in args.model:
        add_model(name)
        model_lines[name] = f'- **{name}**: `{config}`, checkpoint `{checkpoint}`'
    for name, set_key, path in args.results:
        add_model(name)
        eval_set = SET_BY_KEY[set_key]
        results[name][set_key] = load_results(path, eval_set, args.protocol)
        notes.append(f'- {name} / {eval_set.title}: merged from `{path}`.')
        model_lines.setdefault(name, f'- **{name}**: results merged from JSON files')

    jobs = []
    if args.model:
        for eval_set in SETS:
            if eval_set.key not in wanted:
                continue
            where = osp.join(args.data_root, eval_set.path)
            if not osp.exists(where):
                line = f'{eval_set.title}: not found at {where}, skipped'
                print(line)
                if not any(eval_set.key in results[m] for m in models):
                    notes.append(f'- {line}.')
                continue
            for name, config, checkpoint in args.model:
                if eval_set.key in results[name]:
                    continue  # merged from --results
                jobs.append((eval_set, name, config, checkpoint))

    norms = {}
    for i, (eval_set, name, config, checkpoint) in enumerate(jobs, 1):
        desc = f'[{i}/{len(jobs)}] {name} on {eval_set.title}'
        print(desc)
        work_dir = osp.join(args.out, 'work_dirs', name, eval_set.key)
        try:
            cfg, norm = build_test_config(eval_set, args.protocol, config, checkpoint,
                                          args.data_root, work_dir, args)
            norms.setdefault(name, norm)
            metrics = run_evaluation(cfg, desc)
        except Exception as err:  # keep the other evaluations; report the failure loudly
            failed = True
            traceback.print_exc()
            line = f'{name} on {eval_set.title} FAILED: {type(err).__name__}: {err}'
            print(line)
            notes.append(f'- {line}')
            continue
        results[name][eval_set.key] = metrics
        with open(osp.join(args.out, 'results', f'{name}__{eval_set.key}.json'), 'w') as f:
            json.dump(metrics, f, indent=1)

    for name, norm in norms.items():
        model_lines[name] += f'; normalisation {norm}'
    if args.protocol == 'standard':
        notes.append('- ImageNet-A/R class subsets: the fixed 200-wnid lists published with the '
                     'sets (robustvit_mm/datasets/data/imagenet_{a,r}_wnids.json).')

    rows = table_rows(results, models, args.protocol, args.top5)
    table = markdown_table(rows, models)
    write_markdown(osp.join(args.out, 'report.md'), table, args.protocol,
                   [model_lines[m] for m in models], notes)
    write_csv(osp.join(args.out, 'report.csv'), rows, models)
    if rows:
        write_chart(osp.join(args.out, 'report.png'), rows, models, args.protocol)
    print(f'\nProtocol: {args.protocol}\n{table}\n')
    print(f'Wrote {osp.join(args.out, "report.md")}, report.csv' + (', report.png' if rows else ''))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
