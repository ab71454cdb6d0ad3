"""Draw relevance maps (GAE, attention rollout or raw attention) of a ViT classifier.

    python tools/visualize_relevance.py CONFIG [CHECKPOINT] IMAGES... --out DIR \
        [--method gae|attention_rollout|raw_attention] [--target CLASS_IDX] [--batch-size N] \
        [--device cpu] [--vis-backend tensorboard|wandb ...] [--alpha 0.5] [--cfg-options KEY=VALUE ...]

The command line of ``robustvit_mm.apis.RelevanceInferencer``:
- CONFIG: a config file (its ``custom_imports`` are honoured) or an mmpretrain model name.
- CHECKPOINT (optional): the first path after CONFIG when it ends in .pth/.pt/.ckpt or is an http(s)
  URL (or ``--checkpoint``). It must fit the model (``--allow-partial`` accepts missing or extra
  tensors); without one the model keeps its ``init_weights()`` values (a warning says so).
- IMAGES: image files and/or folders (their image files, recursively, sorted), through the config's
  test pipeline (mask steps dropped) and the model's data preprocessor.

Per image: "image | heat map | overlay | colour bar" with the predicted class and score above it, as
``DIR/<stem>_relevance.png`` and through mmengine's visualizer (``DIR/vis_data/vis_image/``, and
TensorBoard / WandB with ``--vis-backend``); a line per image, ``[k/N] PATH: predicted class ...``,
in the order given, shows the progress. The images are explained in one call of the inferencer that
hands the results out as they are made, so memory does not grow with their number. An unreadable
image or a missing path is named and skipped, and the exit code is then 1; ``--out`` naming a file
is refused before anything loads; a checkpoint that does not fit, or a model relevance cannot
explain, is an error (exit code 2).
"""
import argparse
import os
import sys

import torch
from mmengine.config import Config, DictAction

from robustvit_mm.apis import RelevanceInferencer
from robustvit_mm.apis.inferencer import METHODS, VIS_BACKENDS
from robustvit_mm.utils.cli import USER_ERRORS, run_tool, start_tool

CHECKPOINT_EXTENSIONS = ('.pth', '.pt', '.ckpt')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Relevance maps (GAE / attention rollout / raw attention) of a ViT classifier.',
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument('config', help='model config file or mmpretrain model name')
    parser.add_argument('paths', nargs='+', metavar='[CHECKPOINT] IMAGES',
                        help='optional checkpoint (.pth/.pt/.ckpt or URL), then images or folders')
    parser.add_argument('--out', required=True, help='output directory')
    parser.add_argument('--checkpoint', help='checkpoint (alternative to the positional one)')
    parser.add_argument('--allow-partial', action='store_true',
                        help='accept a checkpoint that lacks or adds tensors (never other shapes)')
    parser.add_argument('--method', choices=METHODS, default='gae')
    parser.add_argument('--target', type=int, default=None,
                        help='class index to explain for every image (default: the prediction); '
                        'attention_rollout and raw_attention are class-agnostic and ignore it')
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--device', default=None, help="e.g. 'cpu', 'cuda:0' (default: cuda if any)")
    parser.add_argument('--alpha', type=float, default=0.5, help='heat-map opacity in [0, 1]')
    parser.add_argument('--vis-backend', action='append', choices=sorted(VIS_BACKENDS), default=[],
                        help='extra visualizer backend(s); the local one is always on')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, KEY=VALUE')
    args = parser.parse_args(argv)
    if not 0.0 <= args.alpha <= 1.0:
        parser.error(f'--alpha {args.alpha}: the overlay opacity must be in [0, 1]')
    if args.batch_size < 1:
        parser.error(f'--batch-size {args.batch_size}: must be at least 1')
    paths = list(args.paths)
    if args.checkpoint is None and paths[0].lower().startswith(('http://', 'https://')) or \
            args.checkpoint is None and paths[0].lower().endswith(CHECKPOINT_EXTENSIONS):
        args.checkpoint = paths.pop(0)
    if not paths:
        parser.error('no images given')
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        parser.error(f'--out {args.out}: is a file; give a folder to write the figures to')
    args.paths = paths
    return args


def main(argv=None):
    args = parse_args(argv)
    model = args.config
    if model.endswith('.py'):
        model = Config.fromfile(model)
        if args.cfg_options:
            model.merge_from_dict(args.cfg_options)
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    inferencer = RelevanceInferencer(model, args.checkpoint, device=device, method=args.method,
                                     allow_partial=args.allow_partial, alpha=args.alpha,
                                     vis_backends=args.vis_backend)
    failed = 0
    with inferencer:  # closing flushes the visualizer backends (TensorBoard's last image)
        # one call; results come one at a time, without their arrays: memory stays flat
        results = inferencer.stream(args.paths, batch_size=args.batch_size, target=args.target,
                                    show_dir=args.out, skip_unreadable=True, return_maps=False,
                                    show_progress=False)
        total = len(results)
        for index, result in enumerate(results, 1):
            prefix = f"[{index}/{total}] {result['input']}"
            if 'error' in result:
                print(f"{prefix}: error: {result['error']}; skipped", file=sys.stderr, flush=True)
                failed += 1
                continue
            name = f" ({result['pred_class']})" if 'pred_class' in result else ''
            explained = f', explaining class {args.target}' if args.target is not None else ''
            print(f"{prefix}: predicted class {result['pred_label']}{name}, "
                  f"top-1 score {result['pred_score']:.4f}{explained}", flush=True)
    print(f'{total - failed} of {total} image(s) written to {args.out} (method {args.method})')
    return 1 if failed else 0


if __name__ == '__main__':
    start_tool()
    # a model relevance cannot explain is a TypeError saying why, a missing config a KeyError
    run_tool(main, user_errors=USER_ERRORS + (TypeError, KeyError))
