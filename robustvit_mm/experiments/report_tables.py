"""The robustness report's tables laid out as the paper's: which sets and metrics exist, the
published numbers (data with provenance), Tables 1-2, 3, 4 and 10-11 with Figure 4's chart of
them. Pure presentation: the numbers come from :mod:`robustvit_mm.experiments.report`'s
evaluations.

Models take part in the paper's layout when named ``ARCH:METHOD`` (``ViT-B:original``,
``DeiT-B:no-cls``); method names are matched without regard to case.
"""
import csv
import json
import os.path as osp
from collections import namedtuple

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

PAPER_RESULTS = osp.join(osp.dirname(osp.abspath(__file__)), 'data', 'paper_results.json')
# Rows of Tables 1-2 in the paper's order; the ablations of Table 4 (paper Section 4.3).
METHOD_ORDER = ('original', 'RobustViT', 'TokenCut', 'GradMask', 'RRR')
ABLATIONS = ('no-cls', 'no-bg', 'no-fg', 'gt-ce', 'create-graph')
_CANONICAL = {m.lower(): m for m in METHOD_ORDER + ABLATIONS}

# One table of the report: columns are titles; each row ``(arch, method, [(measured, paper)])``;
# rows with arch 'average change' hold signed changes. ``tables``: the paper tables whose published
# numbers it shows.
Table = namedtuple('Table', 'name title about columns rows')
Column = namedtuple('Column', 'set metric title')


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


# ---------------------------------------------------------------------------- published numbers
def load_paper_results(path=PAPER_RESULTS):
    """``{(table, architecture, method, set, metric): value}`` from the published-numbers file;
    every entry must carry its provenance (table, architecture, method, set, metric)."""
    with open(path, encoding='utf-8') as f:
        data = json.load(f)
    numbers = {}
    for i, entry in enumerate(data.get('entries', [])):
        lacking = [k for k in ('table', 'architecture', 'method', 'set', 'metric', 'value')
                   if entry.get(k) is None]
        if lacking or entry['set'] not in SET_BY_KEY:
            raise ValueError(f'{path}: entry {i} lacks {lacking or "a known set"}: {entry}')
        method = _CANONICAL.get(str(entry['method']).lower(), entry['method'])
        numbers[(str(entry['table']), entry['architecture'], method, entry['set'],
                 entry['metric'])] = float(entry['value'])
    return numbers


def split_name(name):
    """'ViT-B:robustvit' -> ('ViT-B', 'RobustViT') (known methods in the paper's spelling); a name
    without ':' has no place in the paper's layout."""
    arch, sep, method = name.partition(':')
    return (arch, _CANONICAL.get(method.lower(), method)) if sep and arch and method else None


# ------------------------------------------------------------------------------------ the tables
def _method_rows(results, models, protocol, columns, keep, paper, tables):
    """Rows arch x method (paper order, others after) of the ``ARCH:METHOD`` models whose method
    passes ``keep``; each cell ``(measured, published or None)``."""
    named = [(m, split_name(m)) for m in models if split_name(m) and keep(split_name(m)[1])]
    value = {split: results.get(m, {}) for m, split in named}
    order = list(dict.fromkeys(arch for _, (arch, _) in named))
    methods = [m for m in METHOD_ORDER + ABLATIONS if any(x == m for _, (_, x) in named)] + \
        list(dict.fromkeys(x for _, (_, x) in named if x not in METHOD_ORDER + ABLATIONS))

    def measured(arch, method, col):
        return value.get((arch, method), {}).get(col.set, {}).get(
            metric_key(col.set, protocol, col.metric))

    def published(arch, method, col):
        found = [paper[k] for t in tables if (k := (t, arch, method, col.set, col.metric)) in paper]
        return found[0] if found else None

    rows = [(arch, method, [(measured(arch, method, c), published(arch, method, c))
                            for c in columns])
            for arch in order for method in methods if (arch, method) in value]
    # a model with none of this table's values has no row in it
    return [r for r in rows if any(m is not None for m, _ in r[2])], measured, order, methods


def _columns(results, models, protocol, sets, metrics):
    """The (set, metric) columns for which some ``ARCH:METHOD`` model has a value."""
    have = [results.get(m, {}) for m in models if split_name(m)]
    return [Column(s.key, metric, title if len(metrics) > 1 or s.metrics is SEGMENTATION
                   else s.title)
            for s in sets for metric, title in metrics
            if any(metric_key(s.key, protocol, metric) in r.get(s.key, {}) for r in have)]


def _accuracy_sets():
    return [s for s in SETS if s.metrics is ACCURACY]


def tables_1_2(results, models, protocol, paper):
    """Tables 1-2: rows = architecture x {original, RobustViT, TokenCut, GradMask, RRR, others},
    columns = accuracy sets; one average-change row per method (the mean over the architectures
    that have it and ``original`` of the change against ``original``)."""
    columns = _columns(results, models, protocol, _accuracy_sets(), ACCURACY)
    rows, measured, archs, methods = _method_rows(
        results, models, protocol, columns, lambda m: m not in ABLATIONS, paper, ('1', '2'))
    for method in methods:
        if method == 'original' or method in ABLATIONS:
            continue
        cells = []
        for c in columns:
            changes = [measured(a, method, c) - measured(a, 'original', c) for a in archs
                       if measured(a, method, c) is not None
                       and measured(a, 'original', c) is not None]
            cells.append((sum(changes) / len(changes) if changes else None, None))
        if any(m is not None for m, _ in cells):
            rows.append(('average change', method, cells))
    return Table('tables-1-2', 'Tables 1-2: robustness', 'Top-1 accuracy (%); the average-change '
                 'rows are the mean change against `original` over the architectures that have '
                 'both.', [c.title for c in columns], rows)


def table_3(results, models, protocol, paper):
    """Table 3: the relevance-as-segmentation test, pixel accuracy / mIoU / mAP per model."""
    columns = _columns(results, models, protocol, [SET_BY_KEY['imagenet-segmentation']],
                       SEGMENTATION)
    rows = _method_rows(results, models, protocol, columns, lambda m: True, paper, ('3', ))[0]
    return Table('table-3', 'Table 3: relevance as segmentation (ImageNet-segmentation)',
                 'Relevance of the predicted class thresholded at its per-image mean; pixel '
                 'accuracy and mIoU pooled over the set, mAP averaged over images (%).',
                 [c.title for c in columns], rows)


def table_4(results, models, protocol, paper):
    """Table 4: one table per architecture that has an ablation: rows = original, RobustViT and
    the ablation variants of that architecture, columns = accuracy sets."""
    tables = []
    archs = list(dict.fromkeys(split_name(m)[0] for m in models
                               if split_name(m) and split_name(m)[1] in ABLATIONS))
    for arch in archs:
        mine = [m for m in models if split_name(m) and split_name(m)[0] == arch]
        columns = _columns(results, mine, protocol, _accuracy_sets(), ACCURACY)
        rows = _method_rows(results, mine, protocol, columns,
                            lambda m: m in ('original', 'RobustViT') + ABLATIONS, paper,
                            ('4', '12'))[0]
        tables.append(Table(f'table-4-{arch}', f'Table 4: ablations, {arch}',
                            'Top-1 accuracy (%) of the ablation variants (no-cls: without the '
                            'classification loss; no-bg / no-fg: without the background / '
                            'foreground loss; gt-ce: cross-entropy with the ground-truth class; '
                            'create-graph: second-order relevance gradient).',
                            [c.title for c in columns], rows))
    return tables


def tables_10_11(results, models, protocol, paper):
    """Tables 10-11: top-1 accuracy on the fine-tuning classes vs the other classes (from
    ShiftedAccuracy's ``class_split``), per set, rows = architecture x method."""
    columns = [Column(c.set, c.metric, f'{SET_BY_KEY[c.set].title}, {short}')
               for c in _columns(results, models, protocol, _accuracy_sets(), CLASS_GROUPS)
               for short in [('fine-tuning classes' if 'training' in c.metric
                              else 'other classes')]]
    rows = _method_rows(results, models, protocol, columns, lambda m: True, paper,
                        ('10', '11'))[0]
    return Table('tables-10-11', 'Tables 10-11: fine-tuning classes vs other classes',
                 'Top-1 accuracy (%) on the images of the classes the fine-tuning run used (its '
                 '`imagenet_s_split.json`) and on the others.', [c.title for c in columns], rows)


def figure_4(table):
    """Figure 4's numbers from the Tables 10-11 ``table``: ``(column titles, {architecture:
    [RobustViT - original, or None, per column]})`` for the architectures with both rows; columns
    that no architecture has both values of are left out."""
    cells = {(arch, method): row for arch, method, row in table.rows}
    changes = {arch: [None if b is None or a is None else a - b
                      for (b, _), (a, _) in zip(cells[(arch, 'original')],
                                                cells[(arch, 'RobustViT')])]
               for arch in dict.fromkeys(a for a, _, _ in table.rows)
               if (arch, 'original') in cells and (arch, 'RobustViT') in cells}
    keep = [i for i in range(len(table.columns))
            if any(row[i] is not None for row in changes.values())]
    return ([table.columns[i] for i in keep],
            {arch: [row[i] for i in keep] for arch, row in changes.items()})


def draw_figure_4(table, protocol):
    """Figure 4: per set, RobustViT's change over the original model on the fine-tuning classes
    and on the other classes, one bar per architecture. ``(image, column titles, {architecture:
    plotted changes})``, or None when no architecture has both rows."""
    labels, changes = figure_4(table)
    if not labels:
        return None
    image, plotted = grouped_bars(
        labels, changes, f'Figure 4: RobustViT - original ({protocol} protocol)',
        'change in top-1 accuracy (points)', signed=True)
    return image, labels, plotted


def write_figure_4_csv(path, labels, plotted):
    """Rows = architectures, columns = the chart's (set, class group) columns, signed changes."""
    with open(path, 'w', newline='', encoding='utf-8') as f:
        writer = csv.writer(f)
        writer.writerow(['architecture', *labels])
        for arch, values in plotted.items():
            writer.writerow([arch, *['' if v is None else f'{v:+.4f}' for v in values]])


def paper_tables(results, models, protocol, paper=None):
    """Every table of the paper's layout that has a row: Tables 1-2, 3, 4 (per architecture),
    10-11."""
    paper = paper or {}
    made = [tables_1_2(results, models, protocol, paper),
            table_3(results, models, protocol, paper),
            *table_4(results, models, protocol, paper),
            tables_10_11(results, models, protocol, paper)]
    return [t for t in made if t.rows and t.columns]


def _has_paper(table):
    return any(p is not None for _, _, cells in table.rows for _, p in cells)


def table_markdown(table):
    """Measured value, then the published one and the difference when a number is stored."""
    with_paper = _has_paper(table)
    head = [c for col in table.columns for c in ([col, 'paper', 'Δ'] if with_paper else [col])]
    lines = ['| Architecture | Method | ' + ' | '.join(head) + ' |',
             '|---|---|' + '---:|' * len(head)]
    for arch, method, cells in table.rows:
        shown = []
        for m, p in cells:
            if arch == 'average change':
                shown += [fmt(m, signed=True)] + (['', ''] if with_paper else [])
            else:
                shown += [fmt(m)] + ([fmt(p), fmt(None if m is None or p is None else m - p,
                                                 signed=True)] if with_paper else [])
        lines.append(f'| {arch} | {method} | ' + ' | '.join(shown) + ' |')
    return '\n'.join(lines)


def write_table_csv(path, table):
    """Columns: each measured value and its ``(paper)`` column; a ``(difference)`` column too when
    the table shows a published number."""
    with_paper = _has_paper(table)
    with open(path, 'w', newline='', encoding='utf-8') as f:
        writer = csv.writer(f)
        writer.writerow(['architecture', 'method', *[
            c for col in table.columns
            for c in (col, f'{col} (paper)') + ((f'{col} (difference)', ) if with_paper else ())]])
        for arch, method, cells in table.rows:
            row = []
            for m, p in cells:
                row += ['' if m is None else f'{m:.4f}', '' if p is None else f'{p:.4f}']
                if with_paper:
                    row.append('' if m is None or p is None else f'{m - p:+.4f}')
            writer.writerow([arch, method, *row])


def tables_markdown(tables):
    lines = []
    for table in tables:
        lines += [f'## {table.title}', '', table.about, '', table_markdown(table), '',
                  f'(`report_{table.name}.csv`)', '']
    return lines


__all__ = ['table_rows', 'markdown_table', 'write_csv', 'draw_chart', 'grouped_bars', 'figure_rgb',
           'SETS', 'SET_BY_KEY', 'METHOD_ORDER', 'ABLATIONS', 'Table', 'load_paper_results',
           'split_name', 'paper_tables', 'tables_1_2', 'table_3', 'table_4', 'tables_10_11',
           'figure_4', 'draw_figure_4', 'write_figure_4_csv', 'table_markdown',
           'write_table_csv']
