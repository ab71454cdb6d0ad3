"""``RelevanceInferencer``: predictions and relevance maps of a ViT classifier, an mmpretrain
inferencer (``BaseInferencer``'s stages ``preprocess`` -> ``forward`` -> ``visualize`` ->
``postprocess``, as ``ImageClassificationInferencer`` runs them).

    >>> from robustvit_mm.apis import RelevanceInferencer
    >>> inferencer = RelevanceInferencer('configs/robustvit/vit-base-p16_robustvit_imagenet-s.py',
    ...                                  pretrained='work_dirs/.../best.pth', method='gae')
    >>> results = inferencer(['a.jpg', 'b.jpg'], batch_size=2, show_dir='vis')
    >>> results[0]['pred_class'], results[0]['pred_score'], results[0]['relevance'].shape
    ('banana', 0.93, (224, 224))

The model comes from a config file, a ``Config`` or an mmpretrain model name (``get_model``), and
its weights through :func:`robustvit_mm.engine.checkpoint_check.load_checked_checkpoint` (a
checkpoint that does not fit is an error naming the fix, never a random model's maps). Inputs:
image paths, folders (their image files, recursively, sorted), BGR uint8 arrays (mmcv/cv2 order, as
mmpretrain's inferencer takes them), or a list of those. Each image goes through the config's test
pipeline (mask steps dropped) and the model's data preprocessor, in batches.

Per image the result holds the prediction (``pred_label``, ``pred_score``, ``pred_class`` when class
names are known, ``pred_scores``), the explained class (``target``), the relevance map at input
resolution in [0, 1] (``relevance``), the network's input as RGB (``image``), with ``show_dir`` the
written figure (``out_file``) and with ``return_vis=True`` the figure itself (``visualization``):
image | heat map | overlay | colour bar, with the class name and score written above; written
figures also go through mmpretrain's ``UniversalVisualizer`` to its backends (TensorBoard, WandB).

Memory: ``inferencer(...)`` returns every result, each holding its image and map;
:meth:`RelevanceInferencer.stream` gives them one at a time while it works, and
``return_maps=False`` leaves out the image, the map and the scores, so writing the figures of a
whole data set runs in memory that does not grow with the number of images. Call :meth:`close` (or
use ``with``) when done: backends such as TensorBoard write their last records only then.
"""
import numbers
import os
import os.path as osp

import cv2
import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, default_collate
from mmpretrain.apis.base import BaseInferencer
from mmpretrain.registry import TRANSFORMS
from mmpretrain.structures import DataSample
from mmpretrain.visualization import UniversalVisualizer

from ..datasets.imagenet_classes import imagenet_class_names, wnid_to_index
from ..engine.checkpoint_check import (checkpoint_classes, init_checked_model,
                                       load_checked_checkpoint)
from ..relevance import EXPLAINERS, get_explainer
from ..relevance.capture import find_vit
from ..utils import ProgressBar
from ..visualization import colour_bar, heatmap, hstack_panels, inputs_to_rgb, put_text
from ..visualization.overlay import overlay
from .inputs import Unreadable, collect_images, input_label, strip_mask_steps, type_name

METHODS = tuple(EXPLAINERS)  # the relevance engine's names, one per explainer
LOADERS = ('LoadImageFromFile', 'LoadCheckedImage')
VIS_BACKENDS = dict(local='LocalVisBackend', tensorboard='TensorboardVisBackend',
                    wandb='WandbVisBackend')
# This package's choice: one name per option, mmpretrain's; the other spelling is refused naming it.
MMPRETRAIN_NAMES = dict(checkpoint='pretrained', out_dir='show_dir', draw='return_vis')
# Dropped by return_maps=False: the per-image arrays (the map, the input picture, the scores).
MAP_KEYS = ('relevance', 'image', 'pred_scores')


def refuse_other_names(kwargs, where):
    """``TypeError`` for an option spelled otherwise than mmpretrain's inferencers spell it."""
    renamed = [name for name in kwargs if name in MMPRETRAIN_NAMES]
    if renamed:
        raise TypeError(f'{where}: ' + '; '.join(
            f'{name}= is called {MMPRETRAIN_NAMES[name]}= (as in mmpretrain\'s inferencers)'
            for name in renamed))


def readable_classes(classes, num_classes):
    """Names for ``pred_class``: ImageNet-1k wnids become ImageNet's readable names; a 1000-class
    model without names (e.g. converted timm weights) is taken to have ImageNet-1k's classes."""
    if classes is None:
        return list(imagenet_class_names()) if num_classes == 1000 else None
    index = wnid_to_index()
    if classes and all(name in index for name in classes):
        names = imagenet_class_names()
        return [names[index[name]] for name in classes]
    return list(classes)


def output_names(items):
    """A file stem per input, unique within one call and the same for the same inputs on every
    call: the file's stem (``_1``, ``_2``... for repeats) or ``array_<index>``."""
    names, used = [], set()
    for index, item in enumerate(items):
        if isinstance(item, Unreadable):
            names.append(None)
            continue
        stem = osp.splitext(osp.basename(item))[0] if isinstance(item, str) else f'array_{index}'
        name, n = stem or 'image', 1
        while name in used:
            name, n = f'{stem}_{n}', n + 1
        used.add(name)
        names.append(name)
    return names


class ResultStream:
    """The results of one call, one per input and in the inputs' order, made while iterated
    (nothing is kept once handed out); ``len()`` is the number of inputs."""

    def __init__(self, total, results):
        self.total, self._results = total, results

    def __len__(self):
        return self.total

    def __iter__(self):
        return self._results


class RelevanceInferencer(BaseInferencer):
    """Predictions and relevance maps (GAE, attention rollout or raw attention) per image.

    Args:
        model (str | Config | BaseModel): a config file, a ``Config``, an mmpretrain model name, or
            a built model (with ``_config`` as ``get_model`` sets it).
        pretrained (str, optional): the weights' file or URL, checked against the model; without
            them the model's ``init_weights()`` values are used (with a warning).
        device (str, optional): e.g. 'cpu', 'cuda:0'; default the model's device.
        classes (list[str], optional): class names; default the checkpoint's (or the config's test
            dataset's) names, ImageNet-1k wnids shown as ImageNet's readable names.
        method (str): one of :data:`METHODS`, 'gae' (the paper's) by default; a call may
            override it.
        allow_partial (bool): load a checkpoint that lacks or adds tensors (never other shapes).
        vis_backends (list[str]): backends of the visualizer besides the local one ('tensorboard',
            'wandb'), used when ``show_dir`` is given.
        alpha (float): opacity of the heat map in the overlay, in [0, 1].
    """

    preprocess_kwargs = {'skip_unreadable'}
    forward_kwargs = {'method', 'target'}
    visualize_kwargs = {'show_dir', 'return_vis'}
    postprocess_kwargs = {'return_maps'}

    _instances = 0

    def __init__(self, model, pretrained=None, device=None, classes=None, *, method='gae',
                 allow_partial=False, vis_backends=(), alpha=0.5, **kwargs):
        refuse_other_names(kwargs, 'RelevanceInferencer')
        if kwargs:
            raise TypeError('RelevanceInferencer got unexpected keyword argument(s) '
                            f'{sorted(kwargs)}')
        if pretrained is True:
            raise ValueError('pretrained=True: give the weights\' file or URL (they are checked '
                             'against the model before loading)')
        get_explainer(method)  # unknown names fail here, naming the choices
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f'alpha={alpha}: the overlay opacity must be in [0, 1]')
        unknown = [b for b in vis_backends if b not in VIS_BACKENDS]
        if unknown:
            raise ValueError(f'unknown visualizer backend(s) {unknown}; choose from '
                             f'{sorted(VIS_BACKENDS)}')
        if isinstance(model, (str, os.PathLike, Config)):
            model = init_checked_model(model, pretrained or None, allow_partial=allow_partial)
        elif pretrained:
            classes = classes or checkpoint_classes(
                load_checked_checkpoint(model, pretrained, allow_partial=allow_partial))
        if not hasattr(model, '_config'):
            raise TypeError('a built model needs its config as `model._config` (as '
                            'mmpretrain.apis.get_model sets it); or pass the config instead')
        find_vit(model)  # a model relevance cannot explain fails now, saying why
        super().__init__(model=model, pretrained=False, device=device)
        self.method, self.alpha = method, float(alpha)
        self.vis_backends = list(vis_backends)
        if classes is None:
            classes = (getattr(self.model, '_dataset_meta', None) or {}).get('classes')
        self.classes = readable_classes(classes, self.num_classes())
        self._out_dir = None

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
        if steps and type_name(steps[0]) in LOADERS:
            first = steps.pop(0)
            load = dict(first, type='LoadCheckedImage') if isinstance(first, dict) else load
        self._load = TRANSFORMS.build(load)  # names the file on every failure
        return Compose([TRANSFORMS.build(s) if isinstance(s, dict) else s for s in steps])

    def _inputs_to_list(self, inputs):
        """Paths, folders (expanded), arrays or a list of those -> one item per image, in order;
        a missing path or an image-less folder stays in its place as :class:`Unreadable`."""
        return collect_images(inputs)

    def num_classes(self):
        """The model's number of classes (head, timm model or data preprocessor), or None."""
        for owner in (getattr(self.model, 'head', None), getattr(self.model, 'model', None),
                      self.model.data_preprocessor):
            value = getattr(owner, 'num_classes', None)
            if value:
                return int(value)
        return None

    def check_target(self, target):
        """``ValueError`` unless ``target`` is None or a class index of the model (Python or
        NumPy integer, as ``argmax`` returns it)."""
        if target is None:
            return
        total = self.num_classes()
        if isinstance(target, (bool, np.bool_)) or not isinstance(target, numbers.Integral) or \
                (total is not None and not 0 <= target < total):
            raise ValueError(f'target={target!r} is not a class index in 0..{total - 1}'
                             if total else f'target={target!r} is not a class index')

    # ------------------------------------------------------------------------------ the call
    def __call__(self, inputs, return_datasamples=False, batch_size=1, show_progress=True,
                 **kwargs):
        """Explain ``inputs``; a list with one result per input, ``results[i]`` for the i-th
        image (folders count as their image files, in order).

        Args:
            inputs: a path, folder, array, or a list of those.
            return_datasamples (bool): results as mmpretrain ``DataSample`` (``pred_score``,
                ``pred_label``, ``relevance``; ``input`` / ``target`` / ``method`` / ``out_file``
                in the metainfo) instead of dicts.
            batch_size (int): images per forward.
            show_progress (bool): a progress bar on stderr (images done, rate, time left).
            method (str, optional): one of :data:`METHODS` for this call.
            target (int, optional): the class to explain for every image (default: each
                prediction). 'attention_rollout' and 'raw_attention' are class-agnostic: the
                target only names the class in the result.
            show_dir (str, optional): write each figure as ``<show_dir>/<stem>_relevance.png``
                and through the visualizer (``<show_dir>/vis_data/...`` and the extra backends).
            return_vis (bool): keep each figure in its result as ``visualization``.
            return_maps (bool): keep ``relevance``, ``image`` and ``pred_scores`` (default True).
            skip_unreadable (bool): an input that cannot be read gives ``{'input', 'error'}`` in
                its place instead of raising.
        """
        return list(self.stream(inputs, return_datasamples, batch_size, show_progress, **kwargs))

    def stream(self, inputs, return_datasamples=False, batch_size=1, show_progress=True,
               **kwargs):
        """As :meth:`__call__`, but a :class:`ResultStream`: the results one at a time, each made
        when asked for (a batch at a time), so memory does not grow with the number of inputs.
        Options are checked, and missing paths found, before it returns."""
        refuse_other_names(kwargs, 'RelevanceInferencer call')
        pre, fwd, vis, post = self._dispatch_kwargs(**kwargs)
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or \
                batch_size < 1:
            raise ValueError(f'batch_size={batch_size!r}: must be an integer of at least 1')
        get_explainer(fwd.get('method') or self.method)
        self.check_target(fwd.get('target'))
        items = self._inputs_to_list(inputs)
        missing = [item for item in items if isinstance(item, Unreadable)]
        if missing and not pre.get('skip_unreadable'):
            raise FileNotFoundError('; '.join(f'{m.input}: {m.error}' for m in missing))
        show_dir = vis.get('show_dir')
        if show_dir is not None:
            if osp.exists(show_dir) and not osp.isdir(show_dir):
                raise ValueError(f'show_dir={str(show_dir)!r} is a file; give a folder to write '
                                 'the figures to')
            os.makedirs(show_dir, exist_ok=True)
            self._visualizer(show_dir)
        progress = ProgressBar(len(items), unit='images', desc='Relevance') \
            if show_progress else None

        def results():
            for records in self.preprocess(items, batch_size=batch_size, **pre):
                preds = self.forward(records, **fwd)
                batch = self.postprocess(preds, self.visualize(preds, **vis), return_datasamples,
                                         **post)
                if progress is not None:
                    progress.update(len(records))
                yield from batch

        return ResultStream(len(items), results())

    # ------------------------------------------------------------------------- the 4 stages
    def preprocess(self, inputs, batch_size=1, skip_unreadable=False):
        """Chunks of ``batch_size`` records ``{'index', 'input', 'name', 'data'}`` (``name``:
        the figure's file stem; ``data``: the pipeline's output) or, for an input that cannot be
        read, ``{'index', 'input', 'name', 'error'}``."""
        numbered = enumerate(zip(inputs, output_names(inputs)))
        for chunk in self._get_chunk_data(numbered, batch_size):
            yield [self._prepare(index, item, name, skip_unreadable)
                   for index, (item, name) in chunk]

    def _prepare(self, index, item, name, skip_unreadable):
        record = dict(index=index, input=input_label(item, index), name=name)
        if isinstance(item, Unreadable):
            return dict(record, error=item.error)
        try:
            if isinstance(item, np.ndarray):
                if item.ndim != 3 or item.shape[2] != 3:
                    raise ValueError(f'image arrays must be (H, W, 3) BGR, got shape {item.shape}')
                data = dict(img=item, img_shape=item.shape[:2], ori_shape=item.shape[:2])
            else:
                data = self._load(dict(img_path=item))
            data = self.pipeline(data)
            if data is None or 'inputs' not in data:
                raise ValueError('the test pipeline returned nothing')
        except Exception as error:  # corrupt file, not an image, a failing pipeline step
            if not skip_unreadable:
                raise ValueError(f"cannot read {record['input']} as an image: {error}") from error
            return dict(record, error=f'{type(error).__name__}: {error}')
        return dict(record, data=data)

    def forward(self, records, method=None, target=None):
        """Predictions and relevance of the readable records (one batch); unreadable ones pass
        through as ``{'index', 'input', 'error'}``. Gradients are on: GAE needs them."""
        method = method or self.method
        readable = [r for r in records if 'data' in r]
        preds = {r['index']: dict(index=r['index'], input=r['input'], error=r['error'])
                 for r in records if 'error' in r}
        if readable:
            data = self.model.data_preprocessor(default_collate([r['data'] for r in readable]),
                                                False)
            inputs = data['inputs']
            targets = None if target is None else torch.full(
                (inputs.shape[0], ), int(target), dtype=torch.long, device=inputs.device)
            relevance, logits = get_explainer(method)(self.model, inputs, targets)
            probs = logits.detach().float().softmax(dim=1).cpu()
            relevance = relevance[:, 0].detach().float().cpu().numpy()
            images = inputs_to_rgb(inputs, self.model.data_preprocessor)
            for row, record in enumerate(readable):
                score, label = probs[row].max(dim=0)
                pred = dict(index=record['index'], name=record['name'], input=record['input'],
                            pred_label=int(label), pred_score=float(score),
                            pred_scores=probs[row].numpy().copy(),
                            target=int(label) if target is None else int(target),
                            # copies: a kept result must not hold its whole batch's arrays
                            relevance=relevance[row].copy(), image=images[row].copy(),
                            method=method)
                if self.classes is not None and int(label) < len(self.classes):
                    pred['pred_class'] = self.classes[int(label)]
                preds[record['index']] = pred
        return [preds[r['index']] for r in records]

    def visualize(self, preds, show_dir=None, return_vis=False):
        """Per prediction ``{'out_file'?, 'visualization'?}``: the figure written to ``show_dir``
        (and the visualizer's backends) and/or kept (``return_vis``); ``{}`` for errors."""
        out = []
        for pred in preds:
            extra = {}
            if 'error' not in pred and (show_dir is not None or return_vis):
                figure = self.draw(pred)
                if show_dir is not None:
                    extra['out_file'] = self._write(figure, show_dir, pred['name'])
                if return_vis:
                    extra['visualization'] = figure
            out.append(extra)
        return out

    def postprocess(self, preds, visualization, return_datasamples=False, return_maps=True):
        """One result per prediction, in order: a dict (or ``DataSample``); errors stay
        ``{'input', 'error'}``."""
        results = []
        for pred, extra in zip(preds, visualization):
            result = {k: v for k, v in pred.items() if k not in ('index', 'name')}
            result.update(extra)
            if 'error' not in result and not return_maps:
                for key in MAP_KEYS:
                    result.pop(key)
            if 'error' not in result and return_datasamples:
                result = self._datasample(result)
            results.append(result)
        return results

    @staticmethod
    def _datasample(result):
        meta = {k: result[k] for k in ('input', 'target', 'method', 'pred_class', 'out_file')
                if k in result}
        sample = DataSample(metainfo=meta).set_pred_label(result['pred_label'])
        if 'pred_scores' in result:
            sample.set_pred_score(torch.from_numpy(result['pred_scores']))
        for key in ('relevance', 'image', 'visualization'):
            if key in result:
                sample.set_field(result[key], key)
        return sample

    # -------------------------------------------------------------------------- visualisation
    def title(self, result):
        name = f" {result['pred_class']}" if 'pred_class' in result else ''
        text = f"pred {result['pred_label']}{name}: {result['pred_score']:.2f}"
        if result['target'] != result['pred_label']:
            text += f" | explaining {result['target']}"
        return text + f" ({result['method']})"

    def _visualizer(self, out_dir):
        """The visualizer writing to ``out_dir`` (local + extra backends); a new one when
        ``out_dir`` changes."""
        if self.visualizer is None or out_dir != self._out_dir:
            self.close()
            names = ['local', *[b for b in self.vis_backends if b != 'local']]
            RelevanceInferencer._instances += 1  # visualizer names must be unique per process
            self.visualizer = UniversalVisualizer(
                name=f'relevance_inferencer_{os.getpid()}_{RelevanceInferencer._instances}',
                vis_backends=[dict(type=VIS_BACKENDS[n]) for n in names], save_dir=out_dir)
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
        size = max(5, int(band * 0.45))
        x_bar = row.shape[1] + 2
        put_text(canvas, self.title(result), (2, band // 2), size, 'center')
        put_text(canvas, '1', (x_bar, band), size, 'top')
        put_text(canvas, '0', (x_bar, band + height - 1), size, 'bottom')
        return canvas

    def _write(self, figure, out_dir, name):
        self._visualizer(out_dir).add_image(name, figure)
        path = osp.join(out_dir, f'{name}_relevance.png')
        if not cv2.imwrite(path, cv2.cvtColor(figure, cv2.COLOR_RGB2BGR)):
            raise OSError(f'could not write {path}')
        return path

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


__all__ = ['RelevanceInferencer', 'ResultStream', 'METHODS', 'VIS_BACKENDS', 'readable_classes',
           'output_names']
