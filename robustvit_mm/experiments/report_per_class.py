"""The robustness report's per-class analysis (paper Appendix J, Figures 8-14): the change in
per-class top-1 accuracy between ``ARCH:original`` and ``ARCH:RobustViT``.

Appendix J's rule: for a set with 1,000 classes, the 50 classes with the largest rise and the 50
with the largest fall; every other set with all its classes, zero change included. The per-class
accuracies are ShiftedAccuracy's ``per_class_top1/<index>`` keys (the report's ``--per-class``).
"""
import csv
from collections import namedtuple

from .report_tables import SET_BY_KEY, SETS, figure_rgb, safe_name, split_name

# The sets scored over ImageNet's 1,000 classes (Figures 8, 9 and 12); the others show every class.
THOUSAND_CLASS_SETS = ('imagenet-val', 'imagenet-v2', 'imagenet-sketch')

# One class of one comparison: ImageNet index, readable name, top-1 before / after, after - before.
ClassChange = namedtuple('ClassChange', 'index name before after change')
# One chart of Figures 8-14: the set, the two models, and the classes shown, largest rise first.
PerClass = namedtuple('PerClass', 'set before after shown complete')


def comparison_pairs(names):
    """``(before, after)`` model pairs: each architecture's ``ARCH:original`` and
    ``ARCH:RobustViT``; without such names, every model against the first."""
    split = {split_name(n): n for n in names if split_name(n)}
    pairs = [(split[(arch, 'original')], split[(arch, 'RobustViT')])
             for arch in dict.fromkeys(a for a, _ in split)
             if (arch, 'original') in split and (arch, 'RobustViT') in split]
    if pairs or split:
        return pairs
    return [(names[0], other) for other in names[1:]]


def per_class_accuracy(metrics, key, protocol):
    """``{class index: top-1 %}`` from one model's metrics on set ``key``."""
    prefix = f'{key}_{protocol}/per_class_top1/'
    return {int(k[len(prefix):]): v for k, v in metrics.items() if k.startswith(prefix)}


def select_classes(changes, key, top=50):
    """Appendix J's selection from every scored class's :class:`ClassChange`: for a 1,000-class
    set with more than ``2 * top`` classes scored, the ``top`` largest rises and the ``top``
    largest falls; otherwise every class. Ordered by change, largest rise first (ties: class
    index). Returns ``(shown, complete)``."""
    ranked = sorted(changes, key=lambda c: (-c.change, c.index))
    if key in THOUSAND_CLASS_SETS and len(ranked) > 2 * top:
        return ranked[:top] + ranked[-top:], False
    return ranked, True


def per_class_changes(results, models, protocol, top=50):
    """``[PerClass]`` for every comparison pair and set where both models have per-class
    accuracy; ``results``: ``{model: {set key: metrics}}``."""
    from ..datasets.imagenet_classes import imagenet_class_names
    names = imagenet_class_names()
    analysis = []
    for before, after in comparison_pairs(list(models)):
        for eval_set in SETS:
            base = per_class_accuracy(results.get(before, {}).get(eval_set.key, {}),
                                      eval_set.key, protocol)
            other = per_class_accuracy(results.get(after, {}).get(eval_set.key, {}),
                                       eval_set.key, protocol)
            common = sorted(set(base) & set(other))
            if not common:
                continue
            changes = [ClassChange(c, names[c] if c < len(names) else str(c), base[c], other[c],
                                   other[c] - base[c]) for c in common]
            shown, complete = select_classes(changes, eval_set.key, top)
            analysis.append(PerClass(eval_set.key, before, after, shown, complete))
    return analysis


def _direction(change):
    return 'improved' if change.change > 0 else 'harmed' if change.change < 0 else 'unchanged'


def write_per_class_csv(path, analysis):
    with open(path, 'w', newline='', encoding='utf-8') as f:
        writer = csv.writer(f)
        writer.writerow(['set', 'model', 'against', 'direction', 'class', 'name', 'before',
                         'after', 'change'])
        for item in analysis:
            for c in item.shown:
                writer.writerow([item.set, item.after, item.before, _direction(c), c.index,
                                 c.name, f'{c.before:.4f}', f'{c.after:.4f}', f'{c.change:+.4f}'])


def _about(item, top):
    title = SET_BY_KEY[item.set].title
    if item.complete:
        return f'{title}: every class ({len(item.shown)}), zero change included'
    return f'{title}: the {top} most improved and the {top} most harmed classes'


def draw_per_class_chart(item, top):
    """One of Figures 8-14: horizontal bars of the change in per-class top-1 accuracy, largest
    rise at the top (green), largest fall at the bottom (red), no change grey; RGB uint8."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    rows = item.shown
    fig, ax = plt.subplots(figsize=(7.0, max(2.5, 0.16 * len(rows) + 1.2)), dpi=110)
    y = np.arange(len(rows))[::-1]
    colours = {'improved': 'tab:green', 'harmed': 'tab:red', 'unchanged': 'tab:gray'}
    ax.barh(y, [r.change for r in rows], color=[colours[_direction(r)] for r in rows])
    ax.set_yticks(y)
    ax.set_yticklabels([f'{r.name} ({r.index})' for r in rows], fontsize=6)
    ax.axvline(0, color='black', linewidth=0.8)
    ax.set_xlabel('change in per-class top-1 accuracy (points)')
    ax.set_title(f'{_about(item, top)}\n{item.after} against {item.before}', fontsize=9)
    return figure_rgb(fig)


def per_class_section(images, results, models, protocol, top, out_csv):
    """Appendix J in the report: ``out_csv``, one chart per set and pair (``per_class/<set>__<after>
    .png`` and the visualizer's backends under ``per_class_<set>_<after>``) and the report's
    lines; nothing when no pair has per-class accuracy."""
    analysis = per_class_changes(results, models, protocol, top)
    if not analysis:
        scored = [m for m in models for key, metrics in results.get(m, {}).items()
                  if per_class_accuracy(metrics, key, protocol)]
        if not scored:
            return []
        return ['## Per-class changes (Appendix J, Figures 8-14)', '',
                f'Per-class accuracy was measured ({", ".join(dict.fromkeys(scored))}), but no '
                'pair to compare holds it on one set: Appendix J compares ARCH:RobustViT with '
                'ARCH:original (models without ARCH:METHOD names: each with the first).', '']
    write_per_class_csv(out_csv, analysis)
    lines = ['## Per-class changes (Appendix J, Figures 8-14)', '',
             f'Change in per-class top-1 accuracy: for the sets with 1,000 classes the {top} most '
             'improved and most harmed classes, for the others every class, zero change included '
             '(Appendix J\'s rule).', '']
    for item in analysis:
        lines += [f'### {_about(item, top)}: {item.after} against {item.before}', '']
        for title, direction in (('Improved', 'improved'), ('Harmed', 'harmed'),
                                 ('Unchanged', 'unchanged')):
            shown = [c for c in item.shown if _direction(c) == direction]
            if direction == 'harmed':
                shown = shown[::-1]  # largest fall first
            if shown or direction != 'unchanged':
                lines += [f'- {title}: ' + (', '.join(
                    f'{c.name} ({c.index}) {c.before:.0f} -> {c.after:.0f}' for c in shown)
                    or 'none'), '']
        file = f'per_class/{item.set}__{safe_name(item.after)}.png'
        images.add(f'per_class_{item.set}_{safe_name(item.after)}',
                   draw_per_class_chart(item, top), file)
        lines += [f'![{item.set}, {item.after}]({file})', '']
    return lines


__all__ = ['THOUSAND_CLASS_SETS', 'ClassChange', 'PerClass', 'comparison_pairs',
           'select_classes', 'per_class_changes', 'write_per_class_csv', 'draw_per_class_chart',
           'per_class_section']
