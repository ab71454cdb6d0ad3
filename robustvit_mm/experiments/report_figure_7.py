"""Figure 7 (Appendix G): top-1 accuracy on every set against (a) the number of masked images per
training class and (b) the number of training classes, from the sensitivity sweeps.

The points are the report's ``ARCH:METHOD@POINT`` models of ``--sweep`` work dirs (families
``appendix-g-images`` / ``appendix-g-classes`` / ``appendix-g``); a point's x value is the
``num_samples`` / ``num_classes`` dataset option its ``sweep_results.json`` record overrides. The
original model of the same architecture (``ARCH:original``), where the report has it, is drawn as a
dashed line per set: the paper's reading is the change against it (robustness up, INet val and
INet-v2 slightly down).
"""
import csv
import json
import os.path as osp
from collections import namedtuple

from .report_tables import ACCURACY, SET_BY_KEY, SETS, figure_rgb, metric_key, split_name
from .sweep import RESULTS as SWEEP_RESULTS
from .sweep_families import NUM_CLASSES_OPTION, NUM_SAMPLES_OPTION

# panel: 'a' or 'b'; option: the dataset option varied; arch: the architecture of the sweep row.
Panel = namedtuple('Panel', 'name option xlabel')
PANELS = (Panel('a', NUM_SAMPLES_OPTION, 'images per training class'),
          Panel('b', NUM_CLASSES_OPTION, 'number of training classes'))
# One plotted value: panel, architecture, set key, x, top-1 (%), the model it comes from.
Point = namedtuple('Point', 'panel arch set x top1 model')


def varied_value(record, option):
    """The value ``record`` (one entry of ``sweep_results.json``) gives the dataset option
    ``option``, or None; every loader that has the option must get the same value."""
    values = {v for k, v in (record.get('overrides') or {}).items()
              if k.rsplit('.', 1)[-1] == option}
    if len(values) > 1:
        raise ValueError(f'sweep point {record.get("point")}: {option} set to {sorted(values)} '
                         'in different loaders')
    return values.pop() if values else None


def sweep_points(spec, work_dir):
    """``{model name: {option: value}}`` of the Appendix G points of one ``--sweep`` (names as the
    report gives them: ``ARCH:METHOD@POINT``)."""
    arch, _, method = spec.partition(':')
    with open(osp.join(work_dir, SWEEP_RESULTS), encoding='utf-8') as f:
        records = json.load(f)
    found = {}
    for record in records:
        values = {p.option: varied_value(record, p.option) for p in PANELS}
        if any(v is not None for v in values.values()):
            found[f'{arch}:{method or "RobustViT"}@{record["point"]}'] = values
    return found


def figure_7_points(results, sweeps, protocol):
    """``[Point]`` for every Appendix G point of ``sweeps`` (``(spec, work dir)``) with a top-1
    value in ``results`` (``{model: {set key: metrics}}``), and ``{(arch, set): top-1}`` of the
    ``ARCH:original`` models."""
    points = []
    for spec, work_dir in sweeps:
        for model, values in sweep_points(spec, work_dir).items():
            arch = split_name(model.split('@')[0])[0]
            for panel in PANELS:
                if values[panel.option] is None:
                    continue
                for eval_set in SETS:
                    top1 = results.get(model, {}).get(eval_set.key, {}).get(
                        metric_key(eval_set.key, protocol, 'top1'))
                    if eval_set.metrics is ACCURACY and top1 is not None:
                        points.append(Point(panel.name, arch, eval_set.key,
                                            values[panel.option], top1, model))
    originals = {}
    for model, by_set in results.items():
        split = split_name(model)
        if split and split[1] == 'original':
            for key, metrics in by_set.items():
                top1 = metrics.get(metric_key(key, protocol, 'top1'))
                if top1 is not None:
                    originals[(split[0], key)] = top1
    return sorted(points, key=lambda p: (p.panel, p.arch, p.set, p.x)), originals


def draw_figure_7(points, originals, protocol):
    """Panels (a) and (b) side by side, one line per (architecture, set), the original model's
    value dashed in the same colour. RGB uint8, and ``{(panel, arch, set): [(x, y)]}`` read back
    from the drawn lines."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12.0, 4.8), dpi=110)
    plotted = {}
    for ax, panel in zip(axes, PANELS):
        lines = sorted({(p.arch, p.set) for p in points if p.panel == panel.name},
                       key=lambda k: (k[0], [s.key for s in SETS].index(k[1])))
        archs = list(dict.fromkeys(arch for arch, _ in lines))
        for arch, key in lines:
            mine = [p for p in points if (p.panel, p.arch, p.set) == (panel.name, arch, key)]
            # one colour per set in both panels, one marker per architecture
            colour = f'C{[s.key for s in SETS].index(key) % 10}'
            [line] = ax.plot([p.x for p in mine], [p.top1 for p in mine],
                             'osd^v<>'[archs.index(arch) % 7] + '-', color=colour,
                             label=f'{arch}, {SET_BY_KEY[key].title}')
            plotted[(panel.name, arch, key)] = [tuple(map(float, xy)) for xy in line.get_xydata()]
            if (arch, key) in originals:
                ax.axhline(originals[(arch, key)], color=colour, linestyle='--', linewidth=0.8)
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel('top-1 accuracy (%)')
        ax.set_title(f'({panel.name}) {panel.xlabel}', fontsize=10)
        if lines:
            ax.legend(fontsize=6)
        else:
            ax.text(0.5, 0.5, 'no point of this sweep family', ha='center', transform=ax.transAxes)
    fig.suptitle(f'Figure 7: sensitivity ({protocol} protocol; dashed: ARCH:original)',
                 fontsize=10)
    return figure_rgb(fig), plotted


def write_figure_7_csv(path, points, originals):
    with open(path, 'w', newline='', encoding='utf-8') as f:
        writer = csv.writer(f)
        writer.writerow(['panel', 'architecture', 'set', 'x', 'top1', 'original_top1', 'model'])
        for p in points:
            original = originals.get((p.arch, p.set))
            writer.writerow([p.panel, p.arch, p.set, p.x, f'{p.top1:.4f}',
                             '' if original is None else f'{original:.4f}', p.model])


def figure_7_section(images, results, sweeps, protocol, out):
    """Figure 7 in the report (``report_figure-7.png``, the visualizer's backends under
    ``figure_7``, ``report_figure-7.csv``) and its lines; nothing without Appendix G points."""
    points, originals = figure_7_points(results, sweeps, protocol)
    if not points:
        return []
    image, _ = draw_figure_7(points, originals, protocol)
    images.add('figure_7', image, 'report_figure-7.png')
    write_figure_7_csv(osp.join(out, 'report_figure-7.csv'), points, originals)
    return ['## Figure 7: sensitivity to images per class and number of classes (Appendix G)',
            '', 'Top-1 accuracy of each sweep point against (a) the masked images per training '
            'class and (b) the number of training classes; dashed: the original model '
            '(`report_figure-7.csv`).', '', '![Figure 7](report_figure-7.png)', '']


__all__ = ['PANELS', 'Point', 'varied_value', 'sweep_points', 'figure_7_points',
           'draw_figure_7', 'write_figure_7_csv', 'figure_7_section']
