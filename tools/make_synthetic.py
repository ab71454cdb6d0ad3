"""Generate the built-in spurious-background benchmark on disk (thin CLI over ``write_benchmark``).

    .venv/bin/python tools/make_synthetic.py work_dirs/demo/data/seed0 --seed 0

Writes ImageFolder splits (pretrain/, test_in_dist/, test_shifted/), ImageNet-S style masked splits
(masked/, masked_val/: images/ + masks/ with id = G*256 + R), mask folders for the test splits,
samples.csv and meta.json. Re-running with the same parameters does nothing; other parameters
regenerate the folder atomically. See robustvit_mm/datasets/synthetic/render.py for the recipe.
"""
import argparse
import os.path as osp
import time

from robustvit_mm.utils.cli import run_tool, start_tool

start_tool()

from robustvit_mm.datasets.synthetic import DEMO_RECIPE, write_benchmark  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('out_dir', help='output folder (e.g. work_dirs/demo/data/seed0)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--num-classes', type=int, default=10, help='2..20 (default 10)')
    # Defaults: DEMO_RECIPE, the sizes the configs/synthetic/ models and tools/demo.py use.
    p.add_argument('--image-size', type=int, default=DEMO_RECIPE['image_size'],
                   help='multiple of 4, >= 16 (default %(default)s: the configs\' img_size)')
    for key in ('pretrain_per_class', 'masked_per_class', 'masked_val_per_class', 'test_per_class'):
        p.add_argument('--' + key.replace('_', '-'), type=int, default=DEMO_RECIPE[key],
                       help='(default %(default)s)')
    p.add_argument('--p-match', type=float, default=DEMO_RECIPE['p_match'],
                   help='P(background matches the class) in the biased splits (default %(default)s)')
    p.add_argument('--pretrain-random-share', type=float, default=0.0,
                   help='share of pretraining images whose background is drawn over all classes '
                        '(default %(default)s: the demo\'s data)')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    meta_file = osp.join(args.out_dir, 'meta.json')
    before = osp.getmtime(meta_file) if osp.isfile(meta_file) else None
    start = time.perf_counter()
    meta = write_benchmark(
        args.out_dir, seed=args.seed, num_classes=args.num_classes, image_size=args.image_size,
        pretrain_per_class=args.pretrain_per_class, masked_per_class=args.masked_per_class,
        masked_val_per_class=args.masked_val_per_class, test_per_class=args.test_per_class,
        p_match=args.p_match, pretrain_random_share=args.pretrain_random_share)
    elapsed = time.perf_counter() - start
    fresh = before is None or osp.getmtime(meta_file) != before
    state = f'written in {elapsed:.1f} s' if fresh else 'already up to date, nothing written'
    print(f'synthetic benchmark ({meta["generator"]}) at {args.out_dir}: {state}')
    for split, n in meta['counts'].items():
        matched = meta['matched_background'][split]
        frac = matched / n if n else float('nan')
        print(f'  {split:<13} {n:6d} images   background matches class: {frac:.3f}')
    return 0


if __name__ == '__main__':
    run_tool(main)
