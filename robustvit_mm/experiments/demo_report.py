"""What the demo reports: per-seed summaries, paired comparisons over seeds, the checks of the
demo's claims, report.md, the chart and the relevance figure (both through an mmengine Visualizer).

A claim is a paired comparison over seeds: for each seed the difference between two arms (same data,
same pretrained model), then its mean, its smallest value and a 95 % t interval
``mean +- t(0.975, n - 1) * sd / sqrt(n)``. A claim says whether it held on every seed; the claims
of a quick run are not judged (its numbers are meaningless). One seed has no spread: its std and
interval are None and shown as such, never as 0.
"""
import os.path as osp
import shutil
import uuid

import numpy as np

from ..utils.stats import mean_std
from ..visualization.overlay import hstack_panels, overlay, vstack_rows
from .machine import describe_machine

METRICS = ('in_dist_top1', 'shifted_top1', 'relevance_miou')
EXTRA_METRICS = ('relevance_pixacc', 'relevance_map')
METRIC_TITLES = {
    'in_dist_top1': 'in-distribution top-1 (%)',
    'shifted_top1': 'shifted top-1 (%)',
    'relevance_miou': 'relevance mIoU vs mask (%)',
}
FIGURE_CLASSES = (0, 3, 5, 8)   # the first shifted test image of each: fixed, not picked by outcome
TIME_LIMIT_S = 600


def summarize(per_seed, arms, seeds):
    """{arm: {metric: mean, metric_std: std (None for one seed), per_seed: {metric: [values in
    seed order]}}}."""
    summary = {}
    for arm in arms:
        entry = {'per_seed': {}}
        for key in METRICS + EXTRA_METRICS:
            values = [per_seed[s][arm][key] for s in seeds]
            entry[key], entry[f'{key}_std'] = mean_std(values)
            entry['per_seed'][key] = values
        summary[arm] = entry
    return summary


def paired(a, b):
    """Paired comparison of per-seed values ``a - b``: mean, smallest, sd and a 95 % t interval."""
    from scipy.stats import t
    diffs = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    n = len(diffs)
    mean, sd = mean_std(diffs)
    if sd is None:
        ci95 = None
    else:
        half = float(t.ppf(0.975, n - 1) * sd / np.sqrt(n))
        ci95 = [mean - half, mean + half]
    return dict(diffs=[float(d) for d in diffs], mean=mean, min=float(diffs.min()),
                max=float(diffs.max()), sd=sd, n=n, ci95=ci95)


def verdict(comparison, margin=0.0):
    """'every seed' / 'on average (95 % interval above M)' / 'on average only' / 'no' for a - b > M."""
    if comparison['min'] > margin:
        return 'every seed'
    if comparison['ci95'] is not None and comparison['ci95'][0] > margin:
        return 'on average (interval above the margin), not on every seed'
    if comparison['mean'] > margin:
        return 'on average only (interval includes the margin)'
    return 'no'


# (name, arm a, arm b, metric, margin a - b must exceed, what it says)
CLAIMS = (
    ('shortcut', 'pretrained', 'pretrained', None, 25.0,
     'the pretrained model takes the shortcut: in-distribution minus shifted top-1 > 25 points'),
    ('shifted_vs_ce', 'robustvit', 'baseline_ce', 'shifted_top1', 0.0,
     'RobustViT beats plain CE fine-tuning on the shifted test (top-1)'),
    ('relevance_vs_ce', 'robustvit', 'baseline_ce', 'relevance_miou', 0.0,
     'RobustViT moves relevance onto the object more than plain CE (relevance mIoU)'),
    ('shifted_vs_pretrained', 'robustvit', 'pretrained', 'shifted_top1', 0.0,
     'RobustViT beats the pretrained model on the shifted test (top-1)'),
    ('in_dist_cost', 'robustvit', 'pretrained', 'in_dist_top1', -3.0,
     'RobustViT costs at most 3 points of in-distribution top-1 against the pretrained model'),
)


NOT_JUDGED = 'not judged (QUICK run: numbers meaningless)'


def claims(summary, judged=True):
    """Each claim of :data:`CLAIMS` whose arms ran: the paired comparison and its verdict (with
    ``judged=False``: :data:`NOT_JUDGED`, and ``holds_every_seed`` None)."""
    out = []
    for name, a, b, metric, margin, text in CLAIMS:
        if a not in summary or b not in summary:
            continue
        if metric is None:   # within one arm: in-distribution vs shifted
            comp = paired(summary[a]['per_seed']['in_dist_top1'], summary[a]['per_seed']['shifted_top1'])
        else:
            comp = paired(summary[a]['per_seed'][metric], summary[b]['per_seed'][metric])
        out.append(dict(name=name, claim=text, margin=margin,
                        verdict=verdict(comp, margin) if judged else NOT_JUDGED,
                        holds_every_seed=comp['min'] > margin if judged else None, **comp))
    return out


def mean_and_spread(entry, key):
    """'75.6 ± 8.0', or '75.6' for one seed (no spread to show)."""
    std = entry[key + '_std']
    return f'{entry[key]:.1f}' if std is None else f'{entry[key]:.1f} ± {std:.1f}'


def format_table(summary, arms, markdown=False):
    head = ['arm'] + [METRIC_TITLES[k] for k in METRICS]
    rows = [[arm] + [mean_and_spread(summary[arm], k) for k in METRICS] for arm in arms]
    if markdown:
        lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
        return '\n'.join(lines + ['| ' + ' | '.join(r) + ' |' for r in rows])
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    fmt = lambda r: '  '.join(c.ljust(w) for c, w in zip(r, widths))  # noqa: E731
    return '\n'.join([fmt(head), '  '.join('-' * w for w in widths)] + [fmt(r) for r in rows])


def format_per_seed(summary, arms, seeds):
    head = ['metric', 'arm'] + [f'seed {s}' for s in seeds] + ['mean ± std' if len(seeds) > 1
                                                               else 'mean']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for key in METRICS:
        for arm in arms:
            vals = summary[arm]['per_seed'][key]
            lines.append('| ' + ' | '.join([METRIC_TITLES[key], arm] + [f'{v:.1f}' for v in vals]
                                           + [mean_and_spread(summary[arm], key)])
                         + ' |')
    return '\n'.join(lines)


def format_claims(checks, markdown=True):
    """The claims as a table: per-seed differences, mean, smallest, 95 % interval, verdict."""
    rows = []
    for c in checks:
        diffs = ' / '.join(f'{d:+.1f}' for d in c['diffs'])
        interval = 'none (1 seed)' if c['ci95'] is None else \
            f'[{c["ci95"][0]:+.1f}, {c["ci95"][1]:+.1f}]'
        rows.append([c['claim'], f'> {c["margin"]:+g}', diffs, f'{c["mean"]:+.1f}', f'{c["min"]:+.1f}',
                     interval, c['verdict']])
    head = ['claim (difference a - b per seed)', 'needs', 'per seed', 'mean', 'smallest',
            '95 % interval', 'holds']
    if markdown:
        lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
        return '\n'.join(lines + ['| ' + ' | '.join(r) + ' |' for r in rows])
    return '\n'.join(f'  [{"x" if c["holds_every_seed"] else " "}] {r[0]}: per seed {r[2]}; mean '
                     f'{r[3]}, smallest {r[4]}, 95 % interval {r[5]} -> {r[6]}'
                     for c, r in zip(checks, rows))


def write_report(path, result):
    """report.md of one demo run (``result``: what results.json holds)."""
    arms, seeds, summary = list(result['arms']), result['seeds'], result['arms']
    wall = result['wall_time_s']
    lines = [
        '# RobustViT demo on the synthetic spurious-background benchmark', '',
        f'Command: `{result["command"]}`  ',
        f'Seeds: {seeds}; {"QUICK smoke run (numbers meaningless)" if result["quick"] else "full recipe"}  ',
        (f'Wall time: {wall:.0f} s ({wall / 60:.1f} min; {TIME_LIMIT_S / 60:.0f} min is the budget on 2 '
         f'idle cores: {"within" if wall <= TIME_LIMIT_S else "over"}); CPU time '
         f'{result["cpu_time_s"]:.0f} s  ' if wall is not None else
         'Wall time: not measured (pretraining checkpoints reused)  '),
        f'Machine: {describe_machine(result["machine"])}; load average at start / end '
        f'{result["load_average"]["start"]} / {result["load_average"]["end"]}  ',
        'Another CPU gives other numbers (floating-point differences grow through pretraining), within '
        'the spread over seeds; the same command on the same machine gives the same numbers.  ',
        'Evaluated checkpoint: the LAST of each fine-tune (same number of steps for every arm)', '',
        '## Mean ± std over seeds' if len(seeds) > 1 else f'## One seed ({seeds[0]}), no spread', '',
        format_table(summary, arms, True), '',
        '## Per seed', '', format_per_seed(summary, arms, seeds), '',
    ]
    if result['checks']:
        lines += ['## Checks', '',
                  f'Paired over the {len(seeds)} seed(s): per-seed difference a - b, its mean, its smallest '
                  'value and the 95 % t interval of the mean. "every seed": the difference beat the '
                  'margin on each seed.', '', format_claims(result['checks']), '']
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


def _save_through_visualizer(image, name, out_dir, target):
    """Write an RGB uint8 image with an mmengine Visualizer (LocalVisBackend under out_dir/vis) and
    copy it to ``target``."""
    from mmengine.visualization import Visualizer
    vis = Visualizer(name=f'demo_{name}_{uuid.uuid4().hex[:8]}',
                     vis_backends=[dict(type='LocalVisBackend')], save_dir=osp.join(out_dir, 'vis'))
    vis.add_image(name, image, step=0)
    shutil.copyfile(osp.join(out_dir, 'vis', 'vis_data', 'vis_image', f'{name}_0.png'), target)
    return target


def draw_chart(summary, arms, seeds, out_dir):
    """Bar chart (mean ± std, per-seed dots) of every metric; returns the path of chart.png."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4), dpi=120)
    width = 0.8 / len(arms)
    x = np.arange(len(METRICS))
    colours = {'pretrained': '#9e9e9e', 'baseline_ce': '#4c72b0', 'robustvit': '#dd8452',
               'robustvit_gt': '#55a868'}
    for i, arm in enumerate(arms):
        pos = x - 0.4 + width * (i + 0.5)
        ax.bar(pos, [summary[arm][k] for k in METRICS], width * 0.95,
               yerr=None if len(seeds) < 2 else [summary[arm][k + '_std'] for k in METRICS],
               capsize=3, label=arm,
               color=colours.get(arm), alpha=0.9)
        for j, key in enumerate(METRICS):
            ax.scatter([pos[j]] * len(seeds), summary[arm]['per_seed'][key], s=8, color='black',
                       zorder=3)
    ax.set_xticks(x)
    ax.set_xticklabels([METRIC_TITLES[k] for k in METRICS])
    ax.set_ylim(0, 100)
    ax.set_ylabel('%')
    ax.set_title('Synthetic spurious-background benchmark: ' + (
        f'mean ± std over {len(seeds)} seeds' if len(seeds) > 1 else f'one seed ({seeds[0]})'))
    ax.legend(loc='lower left', fontsize=8)
    ax.grid(axis='y', alpha=0.3)
    fig.tight_layout()
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return _save_through_visualizer(image, 'chart', out_dir, osp.join(out_dir, 'chart.png'))


def _text(img, text, org, scale=0.4, colour=(255, 255, 255)):
    import cv2
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def figure_image(panels, backgrounds, before_arm, after_arm):
    """The figure as an RGB uint8 array. Rows: shifted test image | mask | relevance before |
    relevance after. ``panels[arm]``: images (RGB), masks, relevance, labels, pred (see
    ``robustvit_mm.experiments.demo.figure_relevance``)."""
    import cv2
    before, after = panels[before_arm], panels[after_arm]
    scale = max(1, 128 // before['images'][0].shape[0])   # panels of about 128 px
    up = lambda im: cv2.resize(im, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)  # noqa
    rows = []
    for i, image in enumerate(before['images']):
        mask = (np.clip(before['masks'][i], 0, 1) * 255).astype(np.uint8)
        row = [up(image), up(np.repeat(mask[..., None], 3, axis=2)),
               up(overlay(image, before['relevance'][i])), up(overlay(image, after['relevance'][i]))]
        _text(row[0], f'class {before["labels"][i]}', (3, 12))
        _text(row[0], f'bg {backgrounds[i]}', (3, row[0].shape[0] - 5))
        for panel, res in ((row[2], before), (row[3], after)):
            ok = res['pred'][i] == res['labels'][i]
            _text(panel, f'pred {res["pred"][i]}', (3, 12),
                  colour=(120, 255, 120) if ok else (255, 110, 110))
        rows.append(hstack_panels(row))
    grid = vstack_rows(rows)
    header = np.full((22, grid.shape[1], 3), 255, np.uint8)
    titles = ['shifted image', 'mask', f'before ({before_arm})', f'after ({after_arm})']
    step = grid.shape[1] / 4
    for j, t in enumerate(titles):
        cv2.putText(header, t, (int(j * step) + 3, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.37, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return np.concatenate([header, grid], axis=0)


def draw_figure(panels, backgrounds, before_arm, after_arm, out_dir):
    """figure.png (see :func:`figure_image`), written through an mmengine Visualizer."""
    image = figure_image(panels, backgrounds, before_arm, after_arm)
    return _save_through_visualizer(image, 'relevance_shifted', out_dir, osp.join(out_dir, 'figure.png'))
