"""Time and size one RobustViT training step against the released algorithm and a plain CE step.

    python tools/benchmark.py --model vit-b --batch 4            # ViT-B/16 @224, the paper's config
    python tools/benchmark.py --model vit-l --batch 2 --json out.json
    python tools/benchmark.py --config configs/robustvit/deit-small-p16_robustvit_imagenet-s.py
    python tools/benchmark.py --quick                             # a small shape, about a minute

Variants: ours (one forward, one autograd.grad), reference (per-block autograd.grad, two forwards),
plain (ordinary CE step), gae (gae_relevance alone) and fwd_bwd (forward + backward). Ours and the
reference are checked to compute the same losses and gradients before timing. The logic lives in
robustvit_mm.experiments.benchmark; docs/performance.md explains the numbers.
"""
import argparse
import os

from robustvit_mm.utils.cli import run_tool, start_tool

start_tool()

from robustvit_mm.experiments.benchmark import VARIANTS, format_table, log, run_benchmark  # noqa: E402
from robustvit_mm.utils.fileio import atomic_write_json  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESETS = {
    'vit-b': os.path.join(REPO, 'configs/robustvit/vit-base-p16_robustvit_imagenet-s.py'),
    'vit-l': os.path.join(REPO, 'configs/robustvit/vit-large-p16_robustvit_imagenet-s.py'),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group()
    what.add_argument('--model', choices=sorted(PRESETS), default='vit-b',
                      help='a paper config: vit-b (ViT-B/16) or vit-l (ViT-L/16), 224 px')
    what.add_argument('--config', help='any RelevanceGuidedClassifier config (only its shapes)')
    parser.add_argument('--quick', action='store_true',
                        help='a small ViT (6 blocks x 192, 112 px, patch 16): seconds per step')
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--warmup', type=int, default=1, help='untimed rounds first (default 1)')
    parser.add_argument('--repeats', type=int, default=None, help='default 3 (--quick: 5)')
    parser.add_argument('--variants', nargs='+', choices=VARIANTS, default=list(VARIANTS),
                        help='what to time (default all; ratios need their pairs)')
    parser.add_argument('--device', default=None, help='default: cuda if available, else cpu')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch.set_num_threads (default: torch\'s choice). On a busy shared '
                             'CPU, 1 avoids OpenMP barrier stalls that make wall times erratic')
    parser.add_argument('--amp', choices=['bfloat16', 'float16'], default=None,
                        help='mixed precision: mmengine AmpOptimWrapper on CUDA; torch.autocast '
                             '(bfloat16) on CPU, where AmpOptimWrapper refuses to run')
    parser.add_argument('--compile', nargs='?', const='inductor', default=None, metavar='BACKEND',
                        help='torch.compile the backbone (default backend inductor) for every '
                             'variant; compilation happens in the warm-up')
    parser.add_argument('--fused-adamw', action='store_true',
                        help='the config\'s AdamW with fused=True (same update, one kernel); the '
                             'default is the config as written (a per-tensor loop on CPU)')
    parser.add_argument('--no-memory', action='store_true', help='skip the memory measurements')
    parser.add_argument('--no-check', action='store_true',
                        help='skip the equal-work check (never for reported numbers)')
    parser.add_argument('--rtol', type=float, default=1e-4, help='equal-work tolerance')
    parser.add_argument('--json', help='write the results (and the ratios) to this JSON file')
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 5 if args.quick else 3
    if args.batch < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error('--batch and --repeats must be >= 1, --warmup >= 0')
    if args.config and not os.path.isfile(args.config):
        parser.error(f'--config {args.config}: no such file')
    return args


def main(argv=None):
    args = parse_args(argv)
    result = run_benchmark(
        args.config or PRESETS[args.model], quick=args.quick, batch=args.batch,
        warmup=args.warmup, repeats=args.repeats, variants=args.variants, device=args.device,
        threads=args.threads, amp=args.amp, compile=args.compile,
        fused_adamw=args.fused_adamw, memory=not args.no_memory, check=not args.no_check,
        rtol=args.rtol)
    if result['config']:
        result['config'] = os.path.relpath(result['config'], REPO)
    print(format_table(result), flush=True)
    if args.json:
        atomic_write_json(args.json, result)
        log(f'wrote {args.json}')
    return 0


if __name__ == '__main__':
    run_tool(main)
