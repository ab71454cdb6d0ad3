"""Robustness report: evaluate models on every shifted set found under a data root and compare them.

    python tools/robustness_report.py --data-root data --protocol paper --out work_dirs/report \
        --model pretrained configs/robustvit/vit-base-p16_robustvit_imagenet-s.py checkpoints/vit-base-p16_in1k.pth \
        --model robustvit  configs/robustvit/vit-base-p16_robustvit_imagenet-s.py work_dirs/.../best.pth

The command line of ``robustvit_mm.experiments.report.run_report``. Each ``--model NAME CONFIG CHECKPOINT``
is any mmpretrain model config (its ``model`` and normalisation are used) and a checkpoint that must
fit it (checked once, up front). Each set present under ``--data-root`` (the folders the configs in
``configs/robustness/`` name under ``data/``; docs/evaluation.md) is evaluated with that config through
mmengine's ``Runner.from_cfg(cfg).test()``, the path of the stock ``test.py``. Runs done elsewhere merge
in with ``--results NAME SET JSON`` (``test.py CONFIG CKPT --out X.json --out-item metrics``).

Writes ``report.md``, ``report.csv`` (rows = set and metric, columns = models, then each model's
change against the first), ``report.png`` (also through the visualizer: ``vis_data/`` and any
``--vis-backend``) and ``results/<model>__<set>.json`` per run (mergeable again) to ``--out``.
Models named ``ARCH:METHOD`` (``ViT-B:original``, ``ViT-B:RobustViT``, ``ViT-B:no-cls``) also get
the paper's Tables 1-2, 3, 4 and 10-11 (``report_<table>.csv``); ``--class-split NAME WORK_DIR``
splits a fine-tuned model's accuracy into its training classes and the others (Tables 10-11, and
Figure 4's chart of RobustViT's change over the original, ``report_figure-4.png``);
``--per-class [N]`` adds the N most improved and harmed classes of each model against the first,
with a chart (Appendix J); ``--gallery SET`` draws images of ``ARCH:original`` ->
``ARCH:RobustViT`` with both relevance maps, picked by ``--gallery-rule`` (Figure 15: the 2 most
harmed classes and the first 3 images of each that turned right -> wrong; Figure 2; Figures 3/6). docs/evaluation.md
has the command for each table and figure.

Protocols: ``paper`` = 1000-way argmax, ObjectNet first mapped class, no border crop, mean = std = 0.5
for every model; ``standard`` = IN-A/IN-R 200-class argmax, ObjectNet 113-class argmax with any mapped
class counting and a 3-px border crop, each model's native normalisation.
"""
import argparse
import sys


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
                        help='merge metrics written by `test.py ... --out X.json --out-item metrics`')
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
                        help='per-class accuracy and the N (default 50) most improved / harmed '
                        'classes of each model against the first (paper Appendix J)')
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
    from robustvit_mm.compat import silence_known_upstream_warnings
    silence_known_upstream_warnings()
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
    sys.exit(main())
