"""Robustness report: evaluate models on every shifted set found under a data root, compare them,
and lay the numbers out as the paper's tables beside its published ones.

    python tools/robustness_report.py --data-root data --protocol paper --out work_dirs/report \
        --model ViT-B:original configs/robustvit/vit-base-p16_robustvit_imagenet-s.py \
                checkpoints/vit-base-p16_in1k.pth \
        --model ViT-B:RobustViT configs/robustvit/vit-base-p16_robustvit_imagenet-s.py \
                work_dirs/.../best.pth

The command line of ``robustvit_mm.experiments.report.run_report`` (one ``ReportOptions``). Each
``--model NAME CONFIG CHECKPOINT`` is any mmpretrain model config (its ``model`` and normalisation
are used) and a checkpoint that must fit it (checked once, up front). Each set present under
``--data-root`` (the folders the configs in ``configs/robustness/`` name under ``data/``) is
evaluated with that config through mmengine's ``Runner.from_cfg(cfg).test()``, the path of the
stock ``test.py``. Runs done elsewhere merge in with ``--results NAME SET JSON`` (``test.py CONFIG
CKPT --out X.json --out-item metrics``); ``--sweep ARCH WORK_DIR`` adds every finished point of a
sweep as a model ``ARCH:RobustViT@POINT``.

Writes ``report.md``, ``report.csv`` (rows = set and metric, columns = models, then each model's
change against the first), ``report.png`` (also through the visualizer: ``vis_data/`` and any
``--vis-backend``) and ``results/<model>__<set>.json`` per run (mergeable again) to ``--out``.
Models named ``ARCH:METHOD`` (``ViT-B:original``, ``ViT-B:RobustViT``, ``ViT-B:no-cls``) also get
the paper's Tables 1, 2, 3, 4, 8-9 (``ARCH:METHOD@RUN`` models), 10, 11 and 12, each with the
published number and the difference (``report_table-<n>.csv``), and with ``--class-split NAME
WORK_DIR`` Figure 4 (``report_figure-4.png``); ``--per-class [N]`` adds Appendix J's per-class
changes; ``--sweep ARCH WORK_DIR`` of the Appendix G families also Figure 7
(``report_figure-7.png``); ``--gallery SET`` draws images with both relevance maps, picked by
``--gallery-rule`` (Figures 15, 2, 3/6). docs/reproduce.md has the command for each table and figure.

Protocols: ``paper`` = 1000-way argmax, ObjectNet first mapped class, no border crop, mean = std =
0.5 for every model; ``standard`` = IN-A/IN-R 200-class argmax, ObjectNet 113-class argmax with
any mapped class counting and a 3-px border crop, each model's native normalisation.
"""
import argparse
import sys

from robustvit_mm.utils.cli import run_tool, start_tool


def parse_args(argv=None):
    from robustvit_mm.experiments.report import CONFIG_DIR, PROTOCOLS, SET_BY_KEY
    from robustvit_mm.experiments.report_gallery import RULES as GALLERY_RULES
    parser = argparse.ArgumentParser(
        description='Evaluate models on the shifted ImageNet sets and the relevance-segmentation '
        'test; write report.md / report.csv / report.png.',
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument('--model', nargs=3, action='append', default=[],
                        metavar=('NAME', 'CONFIG', 'CHECKPOINT'),
                        help='a model to evaluate (repeatable; the first is the baseline)')
    parser.add_argument('--results', nargs=3, action='append', default=[],
                        metavar=('NAME', 'SET', 'JSON'),
                        help='merge metrics written by `test.py ... --out X.json --out-item '
                        'metrics` (one file per model and set)')
    parser.add_argument('--sweep', nargs=2, action='append', default=[],
                        metavar=('ARCH[:METHOD]', 'WORK_DIR'),
                        help="every finished point of a sweep (its sweep_results.json) as a model "
                        'ARCH:METHOD@POINT (METHOD default RobustViT): Tables 8-9 show their mean '
                        '± std')
    parser.add_argument('--class-split', nargs=2, action='append', default=[],
                        metavar=('NAME', 'SPLIT'),
                        help="a fine-tuned model's imagenet_s_split.json (or work dir): accuracy "
                        'on its fine-tuning classes vs the others')
    parser.add_argument('--per-class', type=int, nargs='?', const=50, default=None, metavar='N',
                        help='per-class accuracy; ARCH:RobustViT against ARCH:original (or each '
                        'model against the first): the N (default 50) most improved and harmed '
                        'classes of a 1,000-class set, every class of the others (Appendix J)')
    parser.add_argument('--gallery', metavar='SET', help='examples of ARCH:original -> '
                        'ARCH:RobustViT on this accuracy set, image | relevance before | after')
    parser.add_argument('--gallery-rule', choices=tuple(GALLERY_RULES), default='figure-15',
                        help='which images: ' + '; '.join(
                            f'{k}: {v}' for k, v in GALLERY_RULES.items()))
    parser.add_argument('--gallery-images', type=int, default=3, metavar='N',
                        help='images drawn per group (per class for figure-15)')
    parser.add_argument('--data-root', help='folder holding the sets under their usual names')
    parser.add_argument('--protocol', choices=tuple(PROTOCOLS), default='paper')
    parser.add_argument('--out', default='work_dirs/robustness_report', help='output folder')
    parser.add_argument('--sets', help=f'comma-separated set keys ({", ".join(SET_BY_KEY)})')
    parser.add_argument('--top5', action='store_true', help='also report top-5 accuracy')
    parser.add_argument('--batch-size', type=int, help='override the test batch size')
    parser.add_argument('--num-workers', type=int, help='override the dataloader workers')
    parser.add_argument('--config-dir', default=CONFIG_DIR,
                        help='where the per-set robustness configs are')
    parser.add_argument('--vis-backend', action='append', default=[],
                        choices=('tensorboard', 'wandb'), help='also send every picture there')
    parser.add_argument('--verbose', action='store_true', help='full mmengine logging')
    return parser.parse_args(argv)


def main(argv=None):
    start_tool()
    args = parse_args(argv)
    import robustvit_mm  # noqa: F401  (registers the plugin)
    from robustvit_mm.experiments.report import ReportOptions, run_report
    options = ReportOptions(
        models=args.model, results=args.results, data_root=args.data_root,
        protocol=args.protocol, out=args.out, sets=args.sets.split(',') if args.sets else None,
        top5=args.top5, batch_size=args.batch_size, num_workers=args.num_workers,
        config_dir=args.config_dir, verbose=args.verbose, vis_backends=args.vis_backend,
        class_splits=dict(args.class_split), per_class=args.per_class is not None,
        top_classes=args.per_class or 50,
        gallery=(args.gallery, args.gallery_images, args.gallery_rule) if args.gallery else None,
        sweeps=args.sweep)
    try:
        return run_report(options)
    except (ValueError, FileNotFoundError, TypeError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    run_tool(main)
