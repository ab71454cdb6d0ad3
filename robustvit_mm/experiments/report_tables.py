"""The robustness report's own table (sets x models) and chart: which sets and metrics exist,
``report.csv`` and its Markdown table, the grouped-bar chart, and how a model name reads as a
paper row. Pure presentation: the numbers come from :mod:`robustvit_mm.experiments.report`'s
evaluations; the paper's tables are :mod:`.paper_layout`.
"""
import csv
from collections import namedtuple

from .paper_results import canonical_method

EvalSet = namedtuple('EvalSet', 'key title metrics')
ACCURACY = (('top1', 'top-1 acc.'), )
TOP5 = (('top5', 'top-5 acc.'), )
# With ShiftedAccuracy(class_split=...) (--class-split): the fine-tuning classes vs the others.
CLASS_GROUPS = (('top1_training_classes', 'top-1, fine-tuning classes'),
                ('top1_other_classes', 'top-1, other classes'))
SEGMENTATION = (('pixAcc', 'pixel acc.'), ('mIoU', 'mIoU'), ('mAP', 'mAP'))
# Presentation only (row order and titles); each key is a config in configs/robustness/.
SETS = (
    EvalSet('imagenet-val', 'ImageNet val', ACCURACY),
    EvalSet('imagenet-a', 'ImageNet-A', ACCURACY),
    EvalSet('imagenet-r', 'ImageNet-R', ACCURACY),
    EvalSet('imagenet-sketch', 'ImageNet-Sketch', ACCURACY),
    EvalSet('imagenet-v2', 'ImageNet-V2', ACCURACY),
    EvalSet('objectnet', 'ObjectNet', ACCURACY),
    EvalSet('si-score-area', 'SI-Score size', ACCURACY),
    EvalSet('si-score-location', 'SI-Score location', ACCURACY),
    EvalSet('si-score-rotation', 'SI-Score rotation', ACCURACY),
    EvalSet('imagenet-segmentation', 'ImageNet-segmentation', SEGMENTATION),
)
SET_BY_KEY = {s.key: s for s in SETS}


def metric_key(key, protocol, metric):
    return f'{key}_{protocol}/{metric}'


def safe_name(name):
    """A model name as a file name or visualizer tag ('ViT-B:RobustViT' -> 'ViT-B_RobustViT')."""
    return ''.join(c if c.isalnum() or c in '-_.' else '_' for c in name)


def fmt(value, signed=False):
    if value is None:
        return '–'
    return f'{value:+.2f}' if signed else f'{value:.2f}'


# ------------------------------------------------------------------- sets x models (report.csv)
def table_rows(results, models, protocol, top5=False):
    """``[(set title, metric label, [value or None per model])]`` for every set with a value."""
    rows = []
    for eval_set in SETS:
        metrics = eval_set.metrics
        if eval_set.metrics is ACCURACY:
            metrics = metrics + (TOP5 if top5 else ()) + CLASS_GROUPS
        for metric, label in metrics:
            key = metric_key(eval_set.key, protocol, metric)
            values = [results.get(m, {}).get(eval_set.key, {}).get(key) for m in models]
            if any(v is not None for v in values):
                rows.append((eval_set.title, label, values))
    return rows


def _deltas(values):
    base = values[0]
    return [None if base is None or v is None else v - base for v in values[1:]]


def markdown_table(rows, models):
    head = ['Set', 'Metric (%)', *models, *[f'Δ {m} − {models[0]}' for m in models[1:]]]
    lines = ['| ' + ' | '.join(head) + ' |',
             '|' + '|'.join(['---', '---'] + ['---:'] * (len(head) - 2)) + '|']
    for title, label, values in rows:
        cells = [title, label, *[fmt(v) for v in values],
                 *[fmt(d, signed=True) for d in _deltas(values)]]
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


def figure_rgb(fig):
    """A drawn matplotlib figure as an RGB uint8 array (the figure is closed)."""
    import matplotlib.pyplot as plt
    import numpy as np
    fig.tight_layout()
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return image


def grouped_bars(labels, series, title, ylabel='%', signed=False):
    """One group of bars per label, one bar per entry of ``series`` (``{name: [value or None per
    label]}``). Returns the RGB uint8 image and ``{name: [height or None]}`` read back from the
    drawn bars (what the chart shows)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(labels))
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 * len(labels) + 2), 5.0), dpi=120)
    plotted = {}
    for i, (name, values) in enumerate(series.items()):
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * width,
                      [np.nan if v is None else v for v in values], width, label=name)
        plotted[name] = [None if np.isnan(b.get_height()) else float(b.get_height())
                         for b in bars]
        ax.bar_label(bars, labels=['' if h is None else (f'{h:+.1f}' if signed else f'{h:.1f}')
                                   for h in plotted[name]], fontsize=7, padding=1)
    if signed:
        ax.axhline(0, color='black', linewidth=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, fontsize=8, rotation=30, ha='right')
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.margins(y=0.12)
    return figure_rgb(fig), plotted


def draw_chart(rows, models, protocol):
    """Grouped bars, one group per (set, metric), one bar per model; an RGB uint8 array."""
    return grouped_bars([f'{title}, {label}' for title, label, _ in rows],
                        {m: [values[i] for _, _, values in rows] for i, m in enumerate(models)},
                        f'Robustness ({protocol} protocol)')[0]


def split_name(name):
    """'ViT-B:robustvit' -> ('ViT-B', 'RobustViT') (known methods in the report's spelling); None
    for a name outside the paper's layout (no ':') and for one run of several (``ARCH:METHOD@RUN``,
    Tables 8-9)."""
    arch, sep, method = name.partition(':')
    if not (sep and arch and method) or '@' in method:
        return None
    return arch, canonical_method(method)


__all__ = ['table_rows', 'markdown_table', 'write_csv', 'draw_chart', 'grouped_bars', 'figure_rgb',
           'SETS', 'SET_BY_KEY', 'split_name', 'safe_name']
