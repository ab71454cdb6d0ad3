"""``RelevanceInferencer``: predictions and relevance maps of a ViT classifier, in the style of
mmpretrain's ``ImageClassificationInferencer``.

    >>> from robustvit_mm.apis import RelevanceInferencer
    >>> inferencer = RelevanceInferencer('configs/robustvit/vit-base-p16_robustvit_imagenet-s.py',
    ...                                  'work_dirs/.../best.pth', method='gae')
    >>> results = inferencer(['a.jpg', 'b.jpg'], batch_size=2, out_dir='vis')
    >>> results[0]['pred_class'], results[0]['pred_score'], results[0]['relevance'].shape
    ('banana', 0.93, (224, 224))

The model comes from a config file, a ``Config`` or an mmpretrain model name (``get_model``), and its
weights through :func:`robustvit_mm.engine.checkpoint_check.load_checked_checkpoint` (a checkpoint that does
not fit is an error naming the fix, never a random model's maps). Inputs: image paths, folders
(their image files, recursively, sorted), BGR uint8 arrays (mmcv/cv2 order, as mmpretrain's
inferencer takes them), or a list of those. Each image goes through the config's test pipeline (mask
steps dropped) and the model's data preprocessor, in batches.

Per image the result holds the prediction (``pred_label``, ``pred_score``, ``pred_class`` when class
names are known, ``pred_scores``), the explained class (``target``), the relevance map at input
resolution in [0, 1] (``relevance``), the network's input as RGB (``image``), and with ``out_dir``
or ``draw=True`` the figure (``visualization``): image | heat map | overlay | colour bar, with the
class name and score written above, drawn through mmpretrain's ``UniversalVisualizer`` and so also
sent to its backends (TensorBoard, WandB). Call :meth:`close` (or use ``with``) when done: backends
such as TensorBoard write their last records only then.
"""
import os
import os.path as osp

import cv2
import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, default_collate
from mmpretrain.apis.base import BaseInferencer
from mmpretrain.registry import TRANSFORMS

from ..datasets.formats import is_image_file
from ..relevance import EXPLAINERS, get_explainer
from ..relevance.capture import find_vit
from ..visualization import colour_bar, heatmap, hstack_panels, inputs_to_rgb
from ..visualization.overlay import overlay
from ..engine.checkpoint_check import checkpoint_classes, init_checked_model, load_checked_checkpoint

METHODS = tuple(EXPLAINERS)  # 'gae', 'rollout', 'raw': the relevance engine's names
LOADERS = ('LoadImageFromFile', 'LoadCheckedImage')
# Steps of the mask-supervised pipelines that need a mask file: not available for a bare image.
MASK_ONLY_TRANSFORMS = ('LoadForegroundMask', )
MASK_WRAPPERS = ('WithMask', 'TransformBroadcaster')
VIS_BACKENDS = dict(local='LocalVisBackend', tensorboard='TensorboardVisBackend',
                    wandb='WandbVisBackend')


def _type_name(step):
    kind = step.get('type') if isinstance(step, dict) else type(step)
    return getattr(kind, '__name__', kind)


def strip_mask_steps(pipeline):
    """Drop steps that read masks and unwrap joint image+mask wrappers into their own steps."""
    steps = []
    for step in pipeline:
        kind = _type_name(step)
        if kind in MASK_ONLY_TRANSFORMS:
            continue
        if kind in MASK_WRAPPERS:
            steps += strip_mask_steps(step.get('transforms', []))
            continue
        steps.append(dict(step) if isinstance(step, dict) else step)
    return steps


def collect_images(paths):
    """``(inputs, problems)``: files as given (any extension), folders expanded to their image
    files (recursively, sorted); arrays pass through; a missing path or image-less folder is a
    problem naming it."""
    if isinstance(paths, (str, os.PathLike, np.ndarray)):
        paths = [paths]
    inputs, problems = [], []
    for path in paths:
        if isinstance(path, np.ndarray):
            inputs.append(path)
        elif osp.isdir(path):
            found = sorted(osp.join(root, name) for root, _, names in os.walk(path)
                           for name in names if is_image_file(name))
            if not found:
                problems.append((str(path), 'folder has no image files'))
            inputs += found
        elif osp.isfile(path):
            inputs.append(str(path))
        else:
            problems.append((str(path), 'no such file or folder'))
    return inputs, problems


class RelevanceInferencer(BaseInferencer):
    """Predictions and relevance maps (GAE, attention rollout or raw attention) per image.

    Args:
        model (str | Config | BaseModel): a config file, a ``Config``, an mmpretrain model name, or
            a built model (with ``_config`` as ``get_model`` sets it).
        checkpoint (str, optional): weights, checked against the model; without them the model's
            ``init_weights()`` values are used (with a warning).
        method (str): 'gae' (the paper's), 'rollout' or 'raw'; a call may override it.
        device (str, optional): e.g. 'cpu', 'cuda:0'; default the model's device.
        classes (list[str], optional): class names; default the checkpoint's (or the config's
            test dataset's) names.
        allow_partial (bool): load a checkpoint that lacks or adds tensors (never other shapes).
        vis_backends (list[str]): backends of the visualizer besides the local one ('tensorboard',
            'wandb'), used when ``out_dir`` is given.
        alpha (float): opacity of the heat map in the overlay, in [0, 1].
    """

    _instances = 0

    def __init__(self, model, checkpoint=None, method='gae', device=None, classes=None,
                 allow_partial=False, vis_backends=(), alpha=0.5):
        get_explainer(method)  # unknown names fail here, naming the choices
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f'alpha={alpha}: the overlay opacity must be in [0, 1]')
        unknown = [b for b in vis_backends if b not in VIS_BACKENDS]
        if unknown:
            raise ValueError(f'unknown visualizer backend(s) {unknown}; choose from '
                             f'{sorted(VIS_BACKENDS)}')
        if isinstance(model, (str, os.PathLike, Config)):
            model = init_checked_model(model, checkpoint, allow_partial=allow_partial)
            checkpoint = None
        elif checkpoint is not None:
            classes = classes or checkpoint_classes(
                load_checked_checkpoint(model, checkpoint, allow_partial=allow_partial))
        if not hasattr(model, '_config'):
            raise TypeError('a built model needs its config as `model._config` (as '
                            'mmpretrain.apis.get_model sets it); or pass the config instead')
        find_vit(model)  # a model relevance cannot explain fails now, saying why
        super().__init__(model=model, pretrained=False, device=device)
        self.method, self.alpha = method, float(alpha)
        self.vis_backends = list(vis_backends)
        self.classes = list(classes) if classes is not None else \
            (getattr(self.model, '_dataset_meta', None) or {}).get('classes')
        self._out_dir = None
        self._used_names = set()

    # ------------------------------------------------------------------------------- pipeline
    def _init_pipeline(self, cfg):
        for loader in ('test_dataloader', 'val_dataloader'):
            pipeline = ((cfg.get(loader) or {}).get('dataset') or {}).get('pipeline')
            if pipeline:
                break
        else:
            raise ValueError('the config has no test_dataloader.dataset.pipeline nor '
                             'val_dataloader.dataset.pipeline to preprocess images with')
        steps = strip_mask_steps(pipeline)
        load = dict(type='LoadCheckedImage')
        if steps and _type_name(steps[0]) in LOADERS:
            first = steps.pop(0)
            load = dict(first, type='LoadCheckedImage') if isinstance(first, dict) else load
        self._load = TRANSFORMS.build(load)  # names the file on every failure
        return Compose([TRANSFORMS.build(s) if isinstance(s, dict) else s for s in steps])

    def _prepare(self, item):
        if isinstance(item, np.ndarray):
            if item.ndim != 3 or item.shape[2] != 3:
                raise ValueError(f'image arrays must be (H, W, 3) BGR, got shape {item.shape}')
            results = dict(img=item, img_shape=item.shape[:2], ori_shape=item.shape[:2])
        else:
            results = self._load(dict(img_path=item))
        results = self.pipeline(results)
        if results is None or 'inputs' not in results:
            raise ValueError(f'the test pipeline returned nothing for {self._label(item)}')
        return results

    @staticmethod
    def _label(item, index=None):
        return item if isinstance(item, str) else f'array #{index}' if index is not None \
            else 'an array'

    def num_classes(self):
        """The model's number of classes (head, timm model or data preprocessor), or None."""
        for owner in (getattr(self.model, 'head', None), getattr(self.model, 'model', None),
                      self.model.data_preprocessor):
            value = getattr(owner, 'num_classes', None)
            if value:
                return int(value)
        return None

    def check_target(self, target):
        """``ValueError`` unless ``target`` is None or a class index of the model."""
        if target is None:
            return
        total = self.num_classes()
        if isinstance(target, bool) or not isinstance(target, int) or \
                (total is not None and not 0 <= target < total):
            raise ValueError(f'target={target!r} is not a class index in 0..{total - 1}'
                             if total else f'target={target!r} is not a class index')

    # ------------------------------------------------------------------------------ inference
    def __call__(self, inputs, batch_size=1, method=None, target=None, out_dir=None, draw=None,
                 skip_unreadable=False):
        """Explain ``inputs``; returns one dict per input, in order.

        Args:
            inputs: a path, folder, array, or a list of those.
            batch_size (int): images per forward.
            method (str, optional): 'gae' | 'rollout' | 'raw' for this call.
            target (int, optional): the class to explain for every image (default: the prediction).
            out_dir (str, optional): write each figure as ``<out_dir>/<stem>_relevance.png`` and
                through the visualizer (``<out_dir>/vis_data/...`` and the extra backends).
            draw (bool, optional): return figures without writing them (default: ``out_dir`` given).
            skip_unreadable (bool): an input that cannot be read gives ``{'input', 'error'}`` in
                its place instead of raising.
        """
        explain = get_explainer(method or self.method)
        method = method or self.method
        if batch_size < 1:
            raise ValueError(f'batch_size={batch_size}: must be at least 1')
        self.check_target(target)
        draw = out_dir is not None if draw is None else draw
        items, problems = collect_images(inputs)
        if problems and not skip_unreadable:
            raise FileNotFoundError('; '.join(f'{p}: {why}' for p, why in problems))
        results = [dict(input=p, error=why) for p, why in problems]
        if out_dir is not None:
            os.makedirs(out_dir, exist_ok=True)
            self._visualizer(out_dir)
        for start in range(0, len(items), batch_size):
            batch, done = [], []
            for index, item in enumerate(items[start:start + batch_size], start):
                try:
                    batch.append(self._prepare(item))
                    done.append((index, item))
                except Exception as error:  # corrupt file, not an image, a failing pipeline step
                    if not skip_unreadable:
                        raise ValueError(f'cannot read {self._label(item, index)} as an image: '
                                         f'{error}') from error
                    results.append(dict(input=self._label(item, index),
                                        error=f'{type(error).__name__}: {error}'))
            if batch:
                results += self._explain(explain, batch, done, target, method, draw, out_dir)
        order = {id(r): i for i, r in enumerate(results)}
        position = {self._label(item, i): i for i, item in enumerate(items)}
        return sorted(results, key=lambda r: (position.get(r['input'], -1), order[id(r)]))

    def _explain(self, explain, batch, done, target, method, draw, out_dir):
        data = self.model.data_preprocessor(default_collate(batch), False)
        inputs = data['inputs']
        targets = None if target is None else torch.full(
            (inputs.shape[0], ), target, dtype=torch.long, device=inputs.device)
        relevance, logits = explain(self.model, inputs, targets)
        probs = logits.detach().float().softmax(dim=1).cpu()
        images = inputs_to_rgb(inputs, self.model.data_preprocessor)
        out = []
        for row, (index, item) in enumerate(done):
            score, label = probs[row].max(dim=0)
            result = dict(input=self._label(item, index), pred_label=int(label),
                          pred_score=float(score), pred_scores=probs[row].numpy(),
                          target=int(label) if target is None else target,
                          relevance=relevance[row, 0].detach().float().cpu().numpy(),
                          image=images[row], method=method)
            if self.classes is not None and int(label) < len(self.classes):
                result['pred_class'] = self.classes[int(label)]
            if draw:
                result['visualization'] = self.draw(result)
                if out_dir is not None:
                    result['out_file'] = self._write(result, out_dir, index)
            out.append(result)
        return out

    # -------------------------------------------------------------------------- visualisation
    def title(self, result):
        name = f" {result['pred_class']}" if 'pred_class' in result else ''
        text = f"pred {result['pred_label']}{name}: {result['pred_score']:.2f}"
        if result['target'] != result['pred_label']:
            text += f" | explaining {result['target']}"
        return text + f" ({result['method']})"

    def _visualizer(self, out_dir=None):
        """The visualizer; a new one (local + extra backends) when ``out_dir`` changes."""
        from mmpretrain.visualization import UniversalVisualizer
        if self.visualizer is None or (out_dir is not None and out_dir != self._out_dir):
            self.close()
            names = ['local', *[b for b in self.vis_backends if b != 'local']]
            backends = None if out_dir is None else [dict(type=VIS_BACKENDS[n]) for n in names]
            RelevanceInferencer._instances += 1  # visualizer names must be unique per process
            self.visualizer = UniversalVisualizer(
                name=f'relevance_inferencer_{os.getpid()}_{RelevanceInferencer._instances}',
                vis_backends=backends, save_dir=out_dir)
            self._out_dir = out_dir
        return self.visualizer

    def draw(self, result):
        """image | heat map | overlay | colour bar, with a title band above; RGB uint8."""
        image, relevance = result['image'], result['relevance']
        height = image.shape[0]
        row = hstack_panels([image, heatmap(relevance), overlay(image, relevance, self.alpha),
                             colour_bar(height, max(6, height // 16))])
        band = max(14, height // 8)
        ticks = 2 * band  # white margin right of the bar for its 0 / 1 labels
        canvas = np.full((band + height, row.shape[1] + ticks, 3), 255, np.uint8)
        canvas[band:, :row.shape[1]] = row
        visualizer = self._visualizer()
        visualizer.set_image(canvas)
        size = max(6, int(band * 0.6))
        x_bar = row.shape[1] + 2
        visualizer.draw_texts(
            [self.title(result), '1', '0'],
            positions=np.array([[2, band // 2], [x_bar, band], [x_bar, band + height - 1]]),
            font_sizes=size, colors='black', vertical_alignments=['center', 'top', 'bottom'])
        return visualizer.get_image()

    def _write(self, result, out_dir, index):
        source = result['input']
        stem = osp.splitext(osp.basename(source))[0] if isinstance(source, str) and \
            not source.startswith('array #') else f'array_{index}'
        name, n = stem or 'image', 1
        while name in self._used_names:
            name, n = f'{stem}_{n}', n + 1
        self._used_names.add(name)
        self._visualizer(out_dir).add_image(name, result['visualization'])
        path = osp.join(out_dir, f'{name}_relevance.png')
        cv2.imwrite(path, cv2.cvtColor(result['visualization'], cv2.COLOR_RGB2BGR))
        return path

    def visualize(self, *args, **kwargs):  # BaseInferencer's hook; drawing happens per result
        raise NotImplementedError('call the inferencer with out_dir=... or draw=True')

    def postprocess(self, *args, **kwargs):
        raise NotImplementedError('RelevanceInferencer.__call__ returns the results itself')

    def close(self):
        """Close the visualizer's backends (TensorBoard writes its last records on close)."""
        if self.visualizer is not None:
            self.visualizer.close()
            self.visualizer = None
            self._out_dir = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


__all__ = ['RelevanceInferencer', 'METHODS', 'collect_images', 'strip_mask_steps']
