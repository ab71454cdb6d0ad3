"""Run an experiment family of the paper through mmpretrain's STOCK train.py and test.py, resumably.

    python tools/sweep.py appendix-e configs/robustvit/vit-base-p16_robustvit_imagenet-s.py \
        --cfg-options load_from=checkpoints/vit-base-p16_in1k.pth \
        train_dataloader.dataset.data_root=data/imagenet \
        val_dataloader.dataset.data_root=data/imagenet \
        test_dataloader.dataset.data_root=data/imagenet
    python tools/sweep.py lr-grid CONFIG --values 1e-6,2e-6,3e-6
    python tools/sweep.py --list                        # the families, their values and rules

Each point is a set of --cfg-options overrides of CONFIG, trained in work_dirs/<sweep>/<point>/ and
tested on its best (or --checkpoint last) checkpoint (the config's test split: the held-out classes).
A rerun skips finished points, resumes interrupted ones and tests again the points tested with
another --checkpoint. Stopping the sweep (Ctrl-C, kill) stops its running train.py / test.py too.
Results: work_dirs/<sweep>/sweep_results.json (a JSON list of {point, config, overrides, work_dir,
metrics, checkpoint, tested_checkpoint, images_per_class}) and sweep_summary.{csv,md}.
Shifted-set numbers of each point: tools/robustness_report.py --model POINT CONFIG CHECKPOINT
(docs/reproduce.md).
"""
import argparse
import os

from mmengine.config import DictAction

from robustvit_mm.experiments.sweep_families import DEFAULT_LR_RULE, LR_RULES, describe_families
from robustvit_mm.utils.cli import exit_with, run_tool, start_tool


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Run a sweep (an experiment family) through the stock train.py / test.py.',
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument('family', nargs='?', help='sweep family (see --list)')
    parser.add_argument('config', nargs='?', help='the config every point starts from')
    parser.add_argument('--list', action='store_true', help='list the families and exit')
    parser.add_argument('--values', help='comma-separated values of the family (default: its own)')
    parser.add_argument('--name', help='sweep name (default: <config stem>_<family>)')
    parser.add_argument('--work-dir', help='sweep root (default: work_dirs/<name>)')
    parser.add_argument('--checkpoint', choices=('best', 'last'), default='best',
                        help='checkpoint each point is tested with (default: best, the lowest '
                        'validation loss, the released code\'s rule)')
    parser.add_argument('--lr-rule', choices=tuple(LR_RULES), default=DEFAULT_LR_RULE,
                        help='lr-grid: how the lr is selected (default: paper, Section 4\'s rule '
                        'against the pretrained model; near-best: within 1 point of the best lr)')
    parser.add_argument('--keep-going', action='store_true',
                        help='report a failed point and go on with the others')
    parser.add_argument('--dry-run', action='store_true',
                        help='check the keys and print the points and the train and test commands; '
                        'launch nothing')
    parser.add_argument('--report', metavar='DATA_ROOT',
                        help='then evaluate the pretrained model and every point on the shifted '
                        'sets under DATA_ROOT (the robustness report, in <sweep>/report)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='key=value overrides applied to every point (checked against '
                        'the config; a key the family sets itself is refused)')
    args = parser.parse_args(argv)
    if not args.list and not (args.family and args.config):
        parser.error('give FAMILY and CONFIG (or --list)')
    if args.report and not os.path.isdir(args.report):  # before days of training, not after
        parser.error(f'--report {args.report}: no such folder')
    return args


def _values(text):
    if text is None:
        return None
    out = []
    for v in text.split(','):
        v = v.strip()
        try:
            out.append(int(v))
        except ValueError:
            try:
                out.append(float(v))
            except ValueError:
                exit_with(f'--values: {v!r} is not a number')
    return out


def main(argv=None):
    args = parse_args(argv)
    from robustvit_mm.experiments.sweep import Sweep
    from robustvit_mm.experiments.sweep_processes import SweepStopped
    if args.list:
        print(describe_families())
        return 0
    sweep = Sweep(args.family, args.config, values=_values(args.values),
                  cfg_options=dict(args.cfg_options), work_dir=args.work_dir, name=args.name,
                  checkpoint=args.checkpoint, lr_rule=args.lr_rule)
    if args.dry_run:
        print(f'sweep {sweep.name}: {sweep.spec.paper} -> {sweep.work_dir}')
        print(f'rule: {sweep.rule}')
        print('\n'.join(sweep.plan()))
        return 0
    try:
        records = sweep.run(keep_going=args.keep_going)
    except SweepStopped as stopped:
        exit_with(str(stopped), 128 + stopped.signum)
    print(f'{len(records)} point(s) finished; {sweep.work_dir}/sweep_summary.md:')
    with open(f'{sweep.work_dir}/sweep_summary.md') as f:
        print(f.read())
    if args.report:
        from robustvit_mm.experiments.report import ReportOptions, run_report
        return run_report(ReportOptions(models=sweep.report_models(), data_root=args.report,
                                        out=f'{sweep.work_dir}/report'))
    print('Shifted sets for every point:\n  ' + ' '.join(sweep.report_command('DATA_ROOT')))
    return 0


if __name__ == '__main__':
    start_tool()
    run_tool(main, user_errors=(ValueError, OSError, RuntimeError))
