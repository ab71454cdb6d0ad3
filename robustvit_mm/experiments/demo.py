"""The built-in benchmark demo as library code (``tools/demo.py`` is its command line).

RobustViT moves a ViT's relevance from a background shortcut onto the object and raises its accuracy
when the background no longer matches the class. For each seed (:mod:`.demo_seed`, one process per
seed) the benchmark is generated (:mod:`robustvit_mm.datasets.synthetic`), a small ViT is pretrained
with plain cross-entropy on the biased split and fine-tuned on 3 masked images per class with plain CE
(the control) and with RobustViT, and every arm is evaluated on the in-distribution test, the shifted
test (the background always belongs to another class) and the relevance-vs-mask segmentation test on
the shifted split. What runs: :mod:`.demo_options`; what is reported: :mod:`.demo_report`. See
docs/demo.md.
"""
import os
import os.path as osp
import resource

from ..utils.fileio import atomic_write_json
from ..utils.progress import StageLog
from .demo_options import (ARMS, EVAL_CONFIGS, PRETRAIN_CONFIG, TUNING_SEEDS, DemoOptions,
                           arm_description, demo_recipe)
from .demo_report import (FIGURE_CLASSES, claims, draw_chart, draw_figure, format_claims,
                          format_table, summarize, write_report)
from .demo_seed import run_seeds
from .machine import machine_info


def cpu_time():
    """CPU seconds of this process and its finished children (the seed processes)."""
    own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                          resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_demo(options=None):
    """Run the demo described by ``options`` (:class:`DemoOptions`); write results.json, report.md,
    chart.png and figure.png under ``options.out``; return the results dict."""
    options = options or DemoOptions()
    options.check()
    options.arms = list(dict.fromkeys(['pretrained'] + list(options.arms)))
    options.out = osp.abspath(options.out)
    os.makedirs(options.out, exist_ok=True)
    return _run(options, demo_recipe(options), list(options.seeds))


def _run(args, recipe, seeds):
    progress = StageLog()
    load_start = os.getloadavg() if hasattr(os, 'getloadavg') else None
    tuning = [s for s in seeds if s in TUNING_SEEDS]
    progress.line(f'RobustViT demo: seeds {seeds}{" (tuning seeds)" if tuning else ""}, arms '
                  f'{args.arms}, out {args.out}{" (QUICK)" if args.quick else ""}, '
                  f'{args.workers} seed process(es) x {args.threads} thread(s)')
    outcomes = run_seeds(seeds, args, recipe, progress)
    figure_state = outcomes[seeds[0]].figure

    summary = summarize({s: o.metrics for s, o in outcomes.items()}, args.arms, seeds)
    after_arm = 'robustvit' if 'robustvit' in args.arms else args.arms[-1]
    draw_figure(figure_state['panels'], figure_state['backgrounds'], 'pretrained', after_arm, args.out)
    draw_chart(summary, args.arms, seeds, args.out)
    wall = progress.elapsed()
    load_end = os.getloadavg() if hasattr(os, 'getloadavg') else None
    result = dict(
        command=args.command, quick=args.quick, seeds=seeds,
        seed_use='tuning' if tuning else 'reported (held out from tuning)',
        arms=summary, checks=claims(summary, judged=not args.quick),
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
        stage_times_s={str(s): o.stage_times for s, o in outcomes.items()},
        checkpoints={str(s): o.checkpoints for s, o in outcomes.items()},
        figure=dict(path='figure.png', seed=figure_state['seed'], indices=figure_state['indices'],
                    classes=list(FIGURE_CLASSES), before='pretrained', after=after_arm))
    atomic_write_json(osp.join(args.out, 'results.json'), result)
    write_report(osp.join(args.out, 'report.md'), result)

    spread = f'Mean ± std over {len(seeds)} seeds' if len(seeds) > 1 else \
        f'One seed ({seeds[0]}), no spread'
    print(f'\n{spread}{" (QUICK: numbers meaningless)" if args.quick else ""}:')
    print(format_table(summary, args.arms))
    if result['checks'] and not args.quick:
        print('\nChecks (paired over seeds):\n' + format_claims(result['checks'], markdown=False))
    timing = 'not measured (--reuse-pretrained)' if args.reuse_pretrained else f'{wall:.0f} s'
    print(f'\nwall time {timing}; wrote {args.out}/results.json, report.md, chart.png, figure.png')
    return result
