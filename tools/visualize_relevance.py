"""Draw relevance maps (GAE, attention rollout or raw attention) of a ViT classifier for some images.

    python tools/visualize_relevance.py CONFIG [CHECKPOINT] IMAGES... --out DIR \
        [--method gae|rollout|raw_attention] [--target CLASS_IDX] [--device cpu] \
        [--vis-backend local|tensorboard|wandb ...] [--alpha 0.5] [--cfg-options KEY=VALUE ...]

- CONFIG: an mmengine/mmpretrain config; its ``custom_imports`` are honoured (and robustvit_mm is
  imported in any case). The model is ``cfg.model`` (with ``cfg.data_preprocessor`` when the model
  has none, as the runner does).
- CHECKPOINT (optional): the first path after CONFIG is taken as a checkpoint when it ends in
  .pth/.pt/.ckpt or is an http(s) URL (or give it with ``--checkpoint``). Without one the model's
  own ``init_weights()`` runs (a config's ``init_cfg`` may point to pretrained weights).
- IMAGES: image files and/or folders (folders: their image files, recursively, sorted).
  Each image goes through the config's test pipeline (``test_dataloader``, else ``val_dataloader``;
  mask-loading steps are dropped) and the model's ``data_preprocessor``.

For each image one row "image | relevance heat map (JET) | overlay" is written through mmengine's
visualizer (``DIR/vis_data/vis_image/<stem>_0.png`` with the local backend; TensorBoard / WandB with
``--vis-backend``) and, for convenience, as ``DIR/<stem>_relevance.png``. The predicted class and its
top-1 probability are printed per image. An unreadable image is reported by name and skipped; the
exit code is then 1.
"""
import argparse
import os
import os.path as osp
import sys

import cv2
import numpy as np
import torch
from mmengine.config import Config, DictAction
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from mmengine.utils import import_modules_from_strings

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff', '.ppm', '.pgm')
CHECKPOINT_EXTENSIONS = ('.pth', '.pt', '.ckpt')
# Steps of the mask-supervised pipelines that need a mask file: not available for a bare image.
MASK_ONLY_TRANSFORMS = ('LoadForegroundMask', )
MASK_WRAPPERS = ('WithMask', 'TransformBroadcaster')
VIS_BACKENDS = dict(local='LocalVisBackend', tensorboard='TensorboardVisBackend',
                    wandb='WandbVisBackend')
METHODS = ('gae', 'rollout', 'raw_attention')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Relevance maps (GAE / rollout / raw attention) of a ViT classifier.',
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument('config', help='model config file')
    parser.add_argument('paths', nargs='+', metavar='[CHECKPOINT] IMAGES',
                        help='optional checkpoint (.pth/.pt/.ckpt or URL), then images or folders')
    parser.add_argument('--out', required=True, help='output directory')
    parser.add_argument('--checkpoint', help='checkpoint (alternative to the positional one)')
    parser.add_argument('--method', choices=METHODS, default='gae')
    parser.add_argument('--target', type=int, default=None,
                        help='class index to explain for every image (default: the prediction)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--alpha', type=float, default=0.5, help='heat-map opacity in the overlay')
    parser.add_argument('--vis-backend', action='append', choices=sorted(VIS_BACKENDS),
                        default=None,
                        help='extra visualizer backend(s); the local one is always on')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, KEY=VALUE')
    args = parser.parse_args(argv)

    paths = list(args.paths)
    if args.checkpoint is None and paths and _looks_like_checkpoint(paths[0]):
        args.checkpoint = paths.pop(0)
    if not paths:
        parser.error('no images given')
    args.paths = paths
    return args


def _looks_like_checkpoint(path):
    return path.startswith(('http://', 'https://')) or path.lower().endswith(CHECKPOINT_EXTENSIONS)


def collect_images(paths):
    """(images, problems): files as given (any extension), folders expanded to their image files."""
    images, problems = [], []
    for path in paths:
        if osp.isdir(path):
            found = sorted(
                osp.join(root, name) for root, _, names in os.walk(path) for name in names
                if name.lower().endswith(IMAGE_EXTENSIONS))
            if not found:
                problems.append(f'{path}: folder has no image files')
            images += found
        elif osp.isfile(path):
            images.append(path)
        else:
            problems.append(f'{path}: no such file or folder')
    return images, problems


def load_config(path, cfg_options):
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    import robustvit_mm  # noqa: F401  (registers the plugin's modules and its checkpoint loader)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    return cfg


def build_model(cfg, checkpoint, device):
    from mmengine.runner import load_checkpoint
    from mmpretrain.registry import MODELS

    model_cfg = cfg.model.copy()
    if model_cfg.get('data_preprocessor') is None and cfg.get('data_preprocessor') is not None:
        model_cfg['data_preprocessor'] = cfg.data_preprocessor
    model = MODELS.build(model_cfg)
    class_names = None
    if checkpoint:
        state = load_checkpoint(model, checkpoint, map_location='cpu')
        meta = state.get('meta', {}) if isinstance(state, dict) else {}
        class_names = (meta.get('dataset_meta') or {}).get('classes')
    else:
        model.init_weights()
        print('warning: no checkpoint given; using the weights of init_weights() '
              '(a fresh ViT head is all zeros and gives flat, all-zero relevance)', file=sys.stderr)
    return model.to(device).eval(), class_names


def _strip_mask_steps(pipeline):
    """Drop steps that read masks and unwrap joint image+mask wrappers into their own steps."""
    steps = []
    for step in pipeline:
        kind = step.get('type') if isinstance(step, dict) else None
        kind = getattr(kind, '__name__', kind)
        if kind in MASK_ONLY_TRANSFORMS:
            continue
        if kind in MASK_WRAPPERS:
            steps += _strip_mask_steps(step.get('transforms', []))
            continue
        steps.append(step)
    return steps


def build_pipeline(cfg):
    from mmcv.transforms import Compose

    for loader in ('test_dataloader', 'val_dataloader'):
        dataset = (cfg.get(loader) or {}).get('dataset') or {}
        pipeline = dataset.get('pipeline')
        if pipeline:
            break
    else:
        raise ValueError('the config has no test_dataloader.dataset.pipeline nor '
                         'val_dataloader.dataset.pipeline to preprocess images with')
    pipeline = _strip_mask_steps([dict(step) if isinstance(step, dict) else step
                                  for step in pipeline])
    first = pipeline[0].get('type') if pipeline and isinstance(pipeline[0], dict) else None
    if getattr(first, '__name__', first) not in ('LoadImageFromFile', 'LoadCheckedImage'):
        pipeline.insert(0, dict(type='LoadCheckedImage'))
    return Compose(pipeline)


def preprocess(pipeline, model, path):
    """One image file -> (inputs (1, 3, H, W) normalised on the model's device, data sample)."""
    results = pipeline(dict(img_path=path))
    if results is None or 'inputs' not in results:
        raise ValueError('the test pipeline returned nothing (unreadable or empty image)')
    batch = model.data_preprocessor(pseudo_collate([results]), False)
    return batch['inputs'], batch['data_samples'][0]


def display_image(inputs, preprocessor):
    """The network's input as an RGB uint8 picture."""
    from robustvit_mm.visualization.overlay import denormalize_image
    if getattr(preprocessor, '_enable_normalize', False):
        mean, std = preprocessor.mean.cpu().flatten(), preprocessor.std.cpu().flatten()
    else:
        mean, std = torch.zeros(inputs.shape[0]), torch.ones(inputs.shape[0])
    image = denormalize_image(inputs, mean, std)
    # ClsDataPreprocessor says `to_rgb`; mmengine's ImgDataPreprocessor family `_channel_conversion`.
    converted = getattr(preprocessor, 'to_rgb', None)
    if converted is None:
        converted = getattr(preprocessor, '_channel_conversion', False)
    if not converted:
        image = image[..., ::-1]  # still BGR as cv2 loaded it
    return np.ascontiguousarray(image)


def build_visualizer(out_dir, backends):
    from mmpretrain.visualization import UniversalVisualizer
    names = ['local'] + [name for name in (backends or []) if name != 'local']
    return UniversalVisualizer(
        name=f'visualize_relevance_{os.getpid()}_{id(out_dir)}',
        vis_backends=[dict(type=VIS_BACKENDS[name]) for name in names], save_dir=out_dir)


def explainer(method):
    from robustvit_mm.relevance import attention_rollout, gae_relevance, raw_attention
    return dict(gae=gae_relevance, rollout=attention_rollout, raw_attention=raw_attention)[method]


def unique_stem(path, used):
    stem = osp.splitext(osp.basename(path))[0] or 'image'
    candidate, index = stem, 1
    while candidate in used:
        candidate, index = f'{stem}_{index}', index + 1
    used.add(candidate)
    return candidate


def main(argv=None):
    args = parse_args(argv)
    from robustvit_mm.relevance.capture import find_vit
    from robustvit_mm.visualization.overlay import heatmap, hstack_panels, overlay

    cfg = load_config(args.config, args.cfg_options)
    model, class_names = build_model(cfg, args.checkpoint, args.device)
    try:
        find_vit(model)
    except (TypeError, ValueError) as error:
        print(f'error: {args.config}: {error}', file=sys.stderr)
        return 2
    pipeline = build_pipeline(cfg)
    explain = explainer(args.method)

    images, problems = collect_images(args.paths)
    for problem in problems:
        print(f'error: {problem}', file=sys.stderr)
    os.makedirs(args.out, exist_ok=True)
    visualizer = build_visualizer(args.out, args.vis_backend)

    used, failed = set(), list(problems)
    total = len(images)
    for index, path in enumerate(images, 1):
        prefix = f'[{index}/{total}] {path}'
        try:
            inputs, _ = preprocess(pipeline, model, path)
        except Exception as error:  # corrupt file, not an image, a pipeline that cannot handle it
            print(f'{prefix}: error: cannot load {path} as an image '
                  f'({type(error).__name__}: {error}); skipped', file=sys.stderr, flush=True)
            failed.append(path)
            continue
        targets = None
        with torch.no_grad():
            if args.target is not None:
                num_classes = explain_logits_size(model, inputs)
                if not 0 <= args.target < num_classes:
                    print(f'error: --target {args.target} is outside 0..{num_classes - 1}',
                          file=sys.stderr)
                    return 2
                targets = torch.full((inputs.shape[0], ), args.target, dtype=torch.long,
                                     device=inputs.device)
            relevance, logits = explain(model, inputs, targets)
        probs = logits.float().softmax(dim=1)[0]
        score, pred = probs.max(dim=0)
        pred = int(pred)
        name = f' ({class_names[pred]})' if class_names and pred < len(class_names) else ''
        explained = f', explaining class {args.target}' if args.target is not None else ''
        print(f'{prefix}: predicted class {pred}{name}, top-1 score {float(score):.4f}{explained}',
              flush=True)

        image = display_image(inputs[0], model.data_preprocessor)
        row = hstack_panels([image, heatmap(relevance[0]), overlay(image, relevance[0], args.alpha)])
        stem = unique_stem(path, used)
        visualizer.add_image(stem, row)
        cv2.imwrite(osp.join(args.out, f'{stem}_relevance.png'), cv2.cvtColor(row, cv2.COLOR_RGB2BGR))

    written = total - len([p for p in failed if p in images])
    print(f'{written} of {total} image(s) written to {args.out} (method {args.method})')
    if failed:
        print(f'{len(failed)} problem(s): ' + ', '.join(failed), file=sys.stderr)
        return 1
    return 0


def explain_logits_size(model, inputs):
    """Number of classes, from the head's configuration or one forward."""
    head = getattr(model, 'head', None)
    if head is not None and getattr(head, 'num_classes', None):
        return head.num_classes
    model_ = getattr(model, 'model', None)
    if model_ is not None and getattr(model_, 'num_classes', None):
        return model_.num_classes
    return model(inputs, mode='tensor').shape[-1]


if __name__ == '__main__':
    sys.exit(main())
