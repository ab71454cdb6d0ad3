"""Sufficient input subsets with gradients (paper Appendix A, Figure 5).

    python tools/sis.py CONFIG CHECKPOINT IMAGE [IMAGE ...] [--random 5] [--classes 368 75]
        [--threshold 0.9] [--fraction 0.05] [--seed 0] [--out work_dirs/sis]
        [--vis-backend tensorboard]

For every image: the model's predicted class, each ``--classes`` class and ``--random`` random
classes (the same for every image, drawn with ``--seed``), a sparse set of pixels that alone makes
the model give that class a confidence of at least ``--threshold`` (the paper: 0.9), found by a
gradient-guided backward selection that removes ``--fraction`` of the remaining pixels per step
(``robustvit_mm.experiments.sis``). Writes ``sis_results.json`` (one record per search: the
subset's size, its confidence, the mask file), ``masks/<image>_class<c>.png`` and Figure 5's grid
``sis_figure-5.png`` (also through the visualizer: ``vis_data/`` and any ``--vis-backend``).

Exit status 0 when every search found a subset, 1 when one did not (everything is still written;
its line and record say "no subset found"), 2 on a bad request.
"""
import argparse

from robustvit_mm.utils.cli import run_tool, start_tool


def parse_args(argv=None):
    from robustvit_mm.experiments.sis import PAPER_RANDOM_CLASSES, PAPER_THRESHOLD
    parser = argparse.ArgumentParser(
        description='Sufficient input subsets with gradients (paper Appendix A, Figure 5).',
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument('config', help='the model\'s config (its test pipeline preprocesses)')
    parser.add_argument('checkpoint', help='weights that fit the config (checked)')
    parser.add_argument('images', nargs='+', help='image files')
    parser.add_argument('--classes', type=int, nargs='+', default=[], metavar='C',
                        help='class indices searched for on every image')
    parser.add_argument('--random', type=int, default=PAPER_RANDOM_CLASSES, metavar='N',
                        help=f'random classes per image (default {PAPER_RANDOM_CLASSES}, as in '
                        'Figure 5)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the random classes')
    parser.add_argument('--threshold', type=float, default=PAPER_THRESHOLD,
                        help=f'confidence the subset must give (default {PAPER_THRESHOLD})')
    parser.add_argument('--fraction', type=float, default=0.05,
                        help='share of the remaining pixels removed per step')
    parser.add_argument('--out', default='work_dirs/sis', help='output folder')
    parser.add_argument('--vis-backend', action='append', default=[],
                        choices=('tensorboard', 'wandb'), help='also send the figure there')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from robustvit_mm.experiments.sis import SISOptions, check_options, run_sis
    options = SISOptions(args.config, args.checkpoint, args.images, out=args.out,
                         classes=args.classes, random=args.random, seed=args.seed,
                         threshold=args.threshold, fraction=args.fraction,
                         vis_backends=args.vis_backend)
    check_options(options)  # before the model loads
    return run_sis(options)


if __name__ == '__main__':
    start_tool()
    run_tool(main)
