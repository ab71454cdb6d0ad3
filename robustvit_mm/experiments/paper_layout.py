"""The paper's tables and Figure 4 in the paper's own layout, ours | paper | difference.

Models take part when named ``ARCH:METHOD`` (``ViT-B:original``, ``DeiT-B:no-cls``; methods in
any case) and, for Tables 8-9, ``ARCH:METHOD@RUN`` (one run of several, e.g. the class-split seeds
of a sweep). The published numbers come from :mod:`.paper_results`; the measured ones are the
report's evaluations (``{model: {set: {'<set>_<protocol>/<metric>': value}}}``).

- Table 1: INet val, INet-A, INet-R, Sketch, INet-v2, ObjNet, R@1 and R@5; per architecture the
  rows Original, GradMask, RRR, Ours (annotated masks), Ours (TokenCut masks); two average-change
  rows (the paper averages only its own method).
- Table 2: SI-location, SI-rotation, SI-size, R@1 and R@5, each with "(+x)" against Original.
- Table 3: rows pixel accuracy, mIoU, mAP; columns architecture x {Orig, Ours}.
- Tables 4 (R@1) and 12 (R@5): the loss ablations on the nine sets.
- Tables 8 (R@1) and 9 (R@5): mean ± std over runs ``ARCH:METHOD@RUN``.
- Tables 10 (INet sets) and 11 (SI-Score): the fine-tuning classes vs the others, R@1 and R@5,
  two average-change rows.
- Figure 4: the change of Tables 10-11 averaged over the base architectures, (a) R@1, (b) R@5.
"""
import csv
from collections import namedtuple

from ..utils.stats import mean_std
from .paper_results import (AVERAGE, BASE_ARCHITECTURES, EXTRA_METHODS, PAPER_ARCHITECTURES,
                            PAPER_METHODS, canonical_method, inconsistent_averages)
from .report_tables import figure_rgb

# The report's set keys and the paper's column names.
PAPER_SETS = (('imagenet-val', 'INet val'), ('imagenet-a', 'INet-A'), ('imagenet-r', 'INet-R'),
              ('imagenet-sketch', 'Sketch'), ('imagenet-v2', 'INet-v2'), ('objectnet', 'ObjNet'))
SI_SETS = (('si-score-location', 'SI-location'), ('si-score-rotation', 'SI-rotation'),
           ('si-score-area', 'SI-size'))
NINE_SETS = PAPER_SETS + SI_SETS
RECALL = (('top1', 'R@1'), ('top5', 'R@5'))
SEGMENTATION = (('pixAcc', 'Pixel accuracy'), ('mIoU', 'mIoU'), ('mAP', 'mAP'))
TABLE_1_METHODS = ('original', 'GradMask', 'RRR', 'RobustViT', 'TokenCut')
ABLATION_METHODS = ('original', 'RobustViT', 'no-cls', 'no-bg', 'no-fg', 'gt-ce')
CLASS_GROUPS = (('training', 'training classes'), ('other', 'other classes'))
INCONSISTENT_MARK = '‡'

# One cell: our value and the paper's (with std over runs for Tables 8-9, "(+x)" against
# Original for Table 2); ``signed`` for average-change rows; ``mark`` after the paper's value.
Cell = namedtuple('Cell', 'ours paper ours_std paper_std ours_plus paper_plus signed mark',
                  defaults=(None, None, None, None, False, ''))
# ``labels``: the row's label cells (e.g. architecture and the paper's row name).
Row = namedtuple('Row', 'labels cells')
Table = namedtuple('Table', 'name title about header columns rows notes')


def split_model_name(name):
    """'ViT-B:robustvit' -> ('ViT-B', 'RobustViT', None); 'ViT-B:RobustViT@seed1' -> ('ViT-B',
    'RobustViT', 'seed1'); None for a name outside the paper's layout (no ':')."""
    arch, sep, rest = str(name).partition(':')
    method, at, run = rest.partition('@')
    if not (sep and arch and method) or (at and not run):
        return None
    return arch, canonical_method(method), run or None


def check_model_rows(names):
    """Two models that map to one row of a paper table (``DeiT3:RobustViT`` and
    ``DeiT3:robustvit``) are a ``ValueError`` naming both."""
    seen = {}
    for name in names:
        row = split_model_name(name)
        if row is None:
            continue
        if row in seen and seen[row] != name:
            arch, method, run = row
            raise ValueError(f'models {seen[row]!r} and {name!r} are both the row {arch} / '
                             f'{method}{"" if run is None else " run " + run} of the paper '
                             'tables: give them different names (ARCH:METHOD, methods are '
                             'matched without regard to case)')
        seen[row] = name


class Measured:
    """The report's values by paper row: ``value(arch, method, set, metric)`` for single models,
    ``runs(arch, method, set, metric)`` for the ``@RUN`` models of a row."""

    def __init__(self, results, names, protocol):
        self.protocol, self.single, self.run_results, self.archs = protocol, {}, {}, []
        for name in names:
            row = split_model_name(name)
            if row is None:
                continue
            arch, method, run = row
            if arch not in self.archs:
                self.archs.append(arch)
            if run is None:
                self.single[(arch, method)] = results.get(name, {})
            else:
                self.run_results.setdefault((arch, method), []).append(results.get(name, {}))

    def _get(self, metrics, key, metric):
        return metrics.get(key, {}).get(f'{key}_{self.protocol}/{metric}')

    def value(self, arch, method, key, metric):
        return self._get(self.single.get((arch, method), {}), key, metric)

    def runs(self, arch, method, key, metric):
        return [v for m in self.run_results.get((arch, method), [])
                if (v := self._get(m, key, metric)) is not None]

    def methods(self, arch, runs=False):
        source = self.run_results if runs else self.single
        return [m for a, m in source if a == arch]


def _diff(a, b):
    return None if a is None or b is None else a - b


def _paper(paper, table, arch, method, key, metric):
    found = paper.get((table, arch, method, key, metric))
    return (found.value, found.std) if found else (None, None)


def _method_label(method):
    return PAPER_METHODS.get(method) or EXTRA_METHODS.get(method) or f'{method} (not in the paper)'


def _rows_by_method(measured, paper, table, methods, columns, extras=(), archs=None):
    """Rows architecture x method for the architectures (``archs``, default all) with a measured
    value in ``columns``: the paper's ``methods`` measured or published, then ``extras`` measured
    (marked as not in the paper). ``columns``: ``(set, metric)``."""
    rows = []
    for arch in measured.archs if archs is None else archs:
        mine = [m for m in measured.methods(arch) if m in methods or m in extras]
        has = [m for m in mine if any(measured.value(arch, m, k, x) is not None
                                      for k, x in columns)]
        if not has:
            continue
        shown = [m for m in methods if m in has or any(
            (table, arch, m, k, x) in paper for k, x in columns)]
        shown += [m for m in has if m not in methods]
        for method in shown:
            cells = [Cell(measured.value(arch, method, k, x),
                          _paper(paper, table, arch, method, k, x)[0]) for k, x in columns]
            rows.append(Row((arch, _method_label(method)), cells))
    return rows


def _other_methods(measured):
    """Measured methods that no table of the paper has a row for (Tables 1-2 show them, marked)."""
    known = TABLE_1_METHODS + ABLATION_METHODS + tuple(EXTRA_METHODS)
    return [m for a in measured.archs for m in measured.methods(a) if m not in known]


def _average_change(measured, method, key, metric, base=None, group=None):
    """Mean over the architectures that have both rows of (method - original); with the
    architectures used."""
    metric = metric if group is None else f'{metric}_{group}_classes'
    used = [a for a in (base or measured.archs)
            if measured.value(a, method, key, metric) is not None
            and measured.value(a, 'original', key, metric) is not None]
    if not used:
        return None, used
    changes = [measured.value(a, method, key, metric) - measured.value(a, 'original', key, metric)
               for a in used]
    return sum(changes) / len(changes), used


def _over(used):
    paper = [a for a in used if a in PAPER_ARCHITECTURES]
    return (f'{len(used)} architecture(s) ({", ".join(used)}; {len(paper)} of the paper\'s '
            f'{len(PAPER_ARCHITECTURES)})')


# ------------------------------------------------------------------------------------ tables
def table_1(measured, paper):
    columns = [(k, m) for k, _ in PAPER_SETS for m, _ in RECALL]
    rows = _rows_by_method(measured, paper, '1', TABLE_1_METHODS, columns,
                           _other_methods(measured))
    notes = []
    if rows:
        for method in ('RobustViT', 'TokenCut'):
            cells, used_all = [], []
            for k, m in columns:
                ours, used = _average_change(measured, method, k, m)
                used_all += [a for a in used if a not in used_all]
                cells.append(Cell(ours, _paper(paper, '1', AVERAGE, method, k, m)[0],
                                  signed=True))
            if used_all:
                rows.append(Row(('Avg. change', _method_label(method)), cells))
                notes.append(f'Avg. change, {_method_label(method)}: ours over '
                             f'{_over(used_all)}; the paper\'s over its seven.')
    return Table('table-1', 'Table 1: robustness on the ImageNet shifts',
                 'Top-1 (R@1) and top-5 (R@5) accuracy (%); the average-change rows are the mean '
                 'over architectures of the change against Original (the paper averages only its '
                 'own method).', ('Architecture', 'Method'),
                 [f'{t}, {r}' for _, t in PAPER_SETS for _, r in RECALL], rows, notes)


def table_2(measured, paper):
    columns = [(k, m) for k, _ in SI_SETS for m, _ in RECALL]
    rows = []
    for row in _rows_by_method(measured, paper, '2', TABLE_1_METHODS, columns,
                               _other_methods(measured)):
        arch = row.labels[0]
        if row.labels[1] == PAPER_METHODS['original']:
            rows.append(row)
            continue
        cells = []
        for cell, (k, m) in zip(row.cells, columns):
            cells.append(cell._replace(
                ours_plus=_diff(cell.ours, measured.value(arch, 'original', k, m)),
                paper_plus=_diff(cell.paper, _paper(paper, '2', arch, 'original', k, m)[0])))
        rows.append(Row(row.labels, cells))
    return Table('table-2', 'Table 2: robustness on SI-Score',
                 'Top-1 (R@1) and top-5 (R@5) accuracy (%), "(+x)" the change against Original.',
                 ('Architecture', 'Method'),
                 [f'{t}, {r}' for _, t in SI_SETS for _, r in RECALL], rows, [])


def table_3(measured, paper):
    key = 'imagenet-segmentation'
    pairs = [(a, m) for a in measured.archs for m in measured.methods(a)
             if any(measured.value(a, m, key, x) is not None for x, _ in SEGMENTATION)]
    order = {m: i for i, m in enumerate(('original', 'RobustViT'))}
    pairs.sort(key=lambda p: (measured.archs.index(p[0]), order.get(p[1], 2)))
    short = {'original': 'Orig', 'RobustViT': 'Ours'}
    titles = [f'{a} {short.get(m) or _method_label(m)}' for a, m in pairs]
    rows = [Row((label, ), [Cell(measured.value(a, m, key, metric),
                                 _paper(paper, '3', a, m, key, metric)[0]) for a, m in pairs])
            for metric, label in SEGMENTATION]
    return Table('table-3', 'Table 3: segmentation from relevance maps (ImageNet-segmentation)',
                 'Relevance of the predicted class thresholded at its per-image mean; pixel '
                 'accuracy and mIoU pooled over the set, mAP averaged over images (%).',
                 ('Metric', ), titles, rows if pairs else [], [])


def table_ablations(measured, paper, metric):
    """Table 4 (``top1``) or Table 12 (``top5``): architectures with an ablation model."""
    table = '4' if metric == 'top1' else '12'
    columns = [(k, metric) for k, _ in NINE_SETS]
    ablations = set(ABLATION_METHODS[2:]) | set(EXTRA_METHODS)
    archs = [a for a in measured.archs if ablations & set(measured.methods(a))]
    rows = _rows_by_method(measured, paper, table, ABLATION_METHODS, columns,
                           tuple(EXTRA_METHODS), archs)
    top = 'top-1' if metric == 'top1' else 'top-5'
    return Table(f'table-{table}', f'Table {table}: ablations ({top})',
                 f'{top.capitalize()} accuracy (%) of the ablation '
                 'variants: without the classification, background or foreground loss term, and '
                 'cross-entropy with the ground-truth class instead of confidence boosting.',
                 ('Architecture', 'Method'), [t for _, t in NINE_SETS], rows, [])


def table_seeds(measured, paper, metric):
    """Table 8 (``top1``) or Table 9 (``top5``): Original, and Ours as mean ± std over the
    ``ARCH:RobustViT@RUN`` models."""
    table = '8' if metric == 'top1' else '9'
    rows, notes = [], []
    for arch in measured.archs:
        if 'RobustViT' not in measured.methods(arch, runs=True):
            continue
        n = len(measured.run_results[(arch, 'RobustViT')])
        for method in ('original', 'RobustViT'):
            cells = []
            for key, _ in NINE_SETS:
                values = measured.runs(arch, method, key, metric) or \
                    [v for v in [measured.value(arch, method, key, metric)] if v is not None]
                mean, std = mean_std(values) if values else (None, None)
                pv, ps = _paper(paper, table, arch, method, key, metric)
                cells.append(Cell(mean, pv, std, ps))
            label = _method_label(method) if method == 'original' else f'Ours ({n} runs)'
            rows.append(Row((arch, label), cells))
        notes.append(f'{arch}: Ours is the mean ± sample std over {n} run(s) named '
                     f'{arch}:RobustViT@RUN; the paper\'s over 3 class-split seeds.')
    return Table(f'table-{table}', f'Table {table}: mean ± std over runs '
                 f'({"top-1" if metric == "top1" else "top-5"})',
                 f'{"Top-1" if metric == "top1" else "Top-5"} accuracy (%), mean ± standard '
                 'deviation over the runs (the paper: three random choices of the 500 '
                 'fine-tuning classes).', ('Architecture', 'Method'),
                 [t for _, t in NINE_SETS], rows, notes)


def table_classes(measured, paper, table):
    """Table 10 (the ImageNet shifts) or Table 11 (SI-Score): per architecture Original and Ours
    on the fine-tuning classes, then on the other classes; two average-change rows."""
    sets = PAPER_SETS if table == '10' else SI_SETS
    columns = [(k, m) for k, _ in sets for m, _ in RECALL]
    off = inconsistent_averages(paper, table)
    rows, notes, used_all = [], [], {}
    for arch in measured.archs:
        arch_rows = []
        for group, group_label in CLASS_GROUPS:
            for method in ('original', 'RobustViT'):
                cells = [Cell(measured.value(arch, method, k, f'{m}_{group}_classes'),
                              _paper(paper, table, arch, method, k, f'{m}_{group}_classes')[0])
                         for k, m in columns]
                arch_rows.append(Row((arch, f'{_method_label(method)}, {group_label}'), cells))
        if any(c.ours is not None for r in arch_rows for c in r.cells):
            rows += arch_rows
    if rows:
        for group, group_label in CLASS_GROUPS:
            cells = []
            for k, m in columns:
                ours, used = _average_change(measured, 'RobustViT', k, m, group=group)
                for a in used:
                    used_all.setdefault(a, None)
                metric = f'{m}_{group}_classes'
                cells.append(Cell(ours, _paper(paper, table, AVERAGE, 'RobustViT', k, metric)[0],
                                  signed=True, mark=INCONSISTENT_MARK
                                  if ('RobustViT', k, metric) in off else ''))
            rows.append(Row(('Avg. change', group_label), cells))
        if used_all:
            notes.append(f'Avg. change: ours over {_over(list(used_all))}; the paper\'s over '
                         'ViT-B, AR-B and DeiT-B.')
        if off:
            notes.append(f'{INCONSISTENT_MARK} The paper\'s Table {table} prints this average, '
                         'which is not the mean of its own printed rows (more than 0.1 apart); '
                         'shown as printed.')
    return Table(f'table-{table}', f'Table {table}: fine-tuning classes vs other classes '
                 f'({"ImageNet shifts" if table == "10" else "SI-Score"})',
                 'Top-1 (R@1) and top-5 (R@5) accuracy (%) on the images of the classes the '
                 'fine-tuning run used (its class split) and on the others.',
                 ('Architecture', 'Method'), [f'{t}, {r}' for _, t in sets for _, r in RECALL],
                 rows, notes)


def paper_tables(results, names, protocol, paper):
    """Every paper table with a measured value, in the paper's order."""
    measured = Measured(results, names, protocol)
    made = [table_1(measured, paper), table_2(measured, paper), table_3(measured, paper),
            table_ablations(measured, paper, 'top1'), table_seeds(measured, paper, 'top1'),
            table_seeds(measured, paper, 'top5'), table_classes(measured, paper, '10'),
            table_classes(measured, paper, '11'), table_ablations(measured, paper, 'top5')]
    return [t for t in made if any(c.ours is not None for r in t.rows for c in r.cells)]


# ---------------------------------------------------------------------------------- Figure 4
def figure_4(results, names, protocol, paper):
    """Figure 4's numbers: per panel (``top1``, ``top5``), per set and class group, RobustViT's
    change over Original averaged over the base architectures (ViT-B, AR-B, DeiT-B; all
    architectures with both rows when none of those is measured), and the paper's printed
    average (Tables 10-11). ``(architectures used, [(panel, set title, group, ours, paper)])``;
    empty when nothing is measured."""
    measured = Measured(results, names, protocol)
    base = [a for a in BASE_ARCHITECTURES if a in measured.archs] or measured.archs
    points, used_all = [], []
    for metric, _ in RECALL:
        for key, title in NINE_SETS:
            table = '11' if (key, title) in SI_SETS else '10'
            for group, _ in CLASS_GROUPS:
                ours, used = _average_change(measured, 'RobustViT', key, metric, base, group)
                if ours is None:
                    continue
                used_all += [a for a in used if a not in used_all]
                published = _paper(paper, table, AVERAGE, 'RobustViT', key,
                                   f'{metric}_{group}_classes')[0]
                points.append((metric, title, group, ours, published))
    return used_all, points


def draw_figure_4(points, used, protocol):
    """Two panels, (a) R@1 and (b) R@5: per set, bars for ours and the paper's change on the
    fine-tuning classes and the other classes. ``(RGB uint8 image, {(panel, series): [plotted
    heights]})``."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    fig, axes = plt.subplots(1, 2, figsize=(14, 5), dpi=110)
    plotted = {}
    for ax, (metric, label) in zip(axes, RECALL):
        mine = [p for p in points if p[0] == metric]
        sets = list(dict.fromkeys(p[1] for p in mine))
        series = {}
        for group, group_label in CLASS_GROUPS:
            series[f'ours, {group_label}'] = [
                next((p[3] for p in mine if p[1] == s and p[2] == group), None) for s in sets]
            series[f'paper, {group_label}'] = [
                next((p[4] for p in mine if p[1] == s and p[2] == group), None) for s in sets]
        x = np.arange(len(sets))
        width = 0.8 / len(series)
        for i, (name, values) in enumerate(series.items()):
            bars = ax.bar(x + (i - (len(series) - 1) / 2) * width,
                          [np.nan if v is None else v for v in values], width, label=name,
                          hatch='//' if name.startswith('paper') else None)
            plotted[(metric, name)] = [None if np.isnan(b.get_height()) else
                                       float(b.get_height()) for b in bars]
        ax.axhline(0, color='black', linewidth=0.8)
        ax.set_xticks(x)
        ax.set_xticklabels(sets, fontsize=8, rotation=30, ha='right')
        ax.set_ylabel(f'average change in {label} (points)')
        ax.set_title(f'({"a" if metric == "top1" else "b"}) {label}')
        ax.legend(fontsize=7)
    fig.suptitle(f'Figure 4: Ours - Original, averaged over {", ".join(used)} '
                 f'({protocol} protocol)', fontsize=10)
    return figure_rgb(fig), plotted


def write_figure_4_csv(path, points):
    with open(path, 'w', newline='', encoding='utf-8') as f:
        writer = csv.writer(f)
        writer.writerow(['panel', 'set', 'classes', 'ours', 'paper', 'difference'])
        for metric, title, group, ours, published in points:
            writer.writerow([dict(RECALL)[metric], title, group, _csv(ours, True),
                             _csv(published, True), _csv(_diff(ours, published), True)])


# --------------------------------------------------------------------------------- rendering
def _fmt(value, signed=False, std=None, plus=None):
    if value is None:
        return '–'
    text = f'{value:+.2f}' if signed else f'{value:.2f}'
    if std is not None:
        text += f' ± {std:.2f}'
    if plus is not None:
        text += f' ({plus:+.2f})'
    return text


def _csv(value, signed=False):
    return '' if value is None else (f'{value:+.4f}' if signed else f'{value:.4f}')


def table_markdown(table):
    """Per column: ours, the paper's value, and ours - paper."""
    head = [*table.header, *[h for c in table.columns for h in (c, 'paper', 'Δ')]]
    lines = ['| ' + ' | '.join(head) + ' |',
             '|' + '---|' * len(table.header) + '---:|' * (len(head) - len(table.header))]
    for row in table.rows:
        shown = []
        for c in row.cells:
            shown += [_fmt(c.ours, c.signed, c.ours_std, c.ours_plus),
                      _fmt(c.paper, c.signed, c.paper_std, c.paper_plus) +
                      (f' {c.mark}' if c.mark and c.paper is not None else ''),
                      _fmt(_diff(c.ours, c.paper), signed=True)]
        lines.append('| ' + ' | '.join([*row.labels, *shown]) + ' |')
    return '\n'.join(lines)


def write_table_csv(path, table):
    """Per column: ``<col>``, ``<col> (paper)``, ``<col> (difference)``, and the std / "(+x)"
    columns where the table has them."""
    cells = [c for r in table.rows for c in r.cells]
    with_std = any(c.ours_std is not None or c.paper_std is not None for c in cells)
    with_plus = any(c.ours_plus is not None or c.paper_plus is not None for c in cells)
    header = list(table.header)
    for col in table.columns:
        header += [col] + ([f'{col} (std)'] if with_std else []) + \
            ([f'{col} (+x)'] if with_plus else []) + [f'{col} (paper)'] + \
            ([f'{col} (paper std)'] if with_std else []) + \
            ([f'{col} (paper +x)'] if with_plus else []) + [f'{col} (difference)']
    with open(path, 'w', newline='', encoding='utf-8') as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in table.rows:
            out = list(row.labels)
            for c in row.cells:
                out += [_csv(c.ours, c.signed)] + ([_csv(c.ours_std)] if with_std else []) + \
                    ([_csv(c.ours_plus, True)] if with_plus else []) + \
                    [_csv(c.paper, c.signed)] + ([_csv(c.paper_std)] if with_std else []) + \
                    ([_csv(c.paper_plus, True)] if with_plus else []) + \
                    [_csv(_diff(c.ours, c.paper), True)]
            writer.writerow(out)


def tables_markdown(tables):
    lines = []
    for table in tables:
        lines += [f'## {table.title}', '', table.about, '', table_markdown(table), '']
        lines += [f'- {note}' for note in table.notes] + ([''] if table.notes else [])
        lines += [f'(`report_{table.name}.csv`)', '']
    return lines


__all__ = ['split_model_name', 'check_model_rows', 'Measured', 'Cell', 'Row', 'Table',
           'table_1', 'table_2', 'table_3', 'table_ablations', 'table_seeds', 'table_classes',
           'paper_tables', 'figure_4', 'draw_figure_4', 'write_figure_4_csv', 'table_markdown',
           'write_table_csv', 'tables_markdown']
