"""What :class:`~robustvit_mm.apis.RelevanceInferencer` takes in: the input list (folders
expanded, a path that cannot be used kept in its place as :class:`Unreadable`) and the config's
test pipeline without the steps that need a mask file."""
import os
import os.path as osp
from typing import NamedTuple

import numpy as np

from ..datasets.formats import is_image_file

# Steps of the mask-supervised pipelines that need a mask file: not available for a bare image.
MASK_ONLY_TRANSFORMS = ('LoadForegroundMask', )
MASK_WRAPPERS = ('WithMask', 'TransformBroadcaster')


class Unreadable(NamedTuple):
    """An input that cannot be used (missing path, folder without images), kept at its position."""
    input: str
    error: str


def type_name(step):
    """The transform name of a pipeline step (a config dict or a built transform)."""
    kind = step.get('type') if isinstance(step, dict) else type(step)
    return getattr(kind, '__name__', kind)


def strip_mask_steps(pipeline):
    """Drop steps that read masks and unwrap joint image+mask wrappers into their own steps."""
    steps = []
    for step in pipeline:
        kind = type_name(step)
        if kind in MASK_ONLY_TRANSFORMS:
            continue
        if kind in MASK_WRAPPERS:
            steps += strip_mask_steps(step.get('transforms', []))
            continue
        steps.append(dict(step) if isinstance(step, dict) else step)
    return steps


def collect_images(inputs):
    """One entry per image, in the order given: files as given (any extension), folders expanded
    to their image files (recursively, sorted), arrays as they are; a missing path or a folder
    without images becomes an :class:`Unreadable` naming it, in its place."""
    if isinstance(inputs, (str, os.PathLike, np.ndarray)):
        inputs = [inputs]
    items = []
    for item in inputs:
        if isinstance(item, np.ndarray):
            items.append(item)
        elif osp.isdir(item):
            found = sorted(osp.join(root, name) for root, _, names in os.walk(item)
                           for name in names if is_image_file(name))
            items += found or [Unreadable(str(item), 'folder has no image files')]
        elif osp.isfile(item):
            items.append(str(item))
        else:
            items.append(Unreadable(str(item), 'no such file or folder'))
    return items


def input_label(item, index):
    """How results and messages name an input: its path, or 'array #<index>'."""
    if isinstance(item, Unreadable):
        return item.input
    return item if isinstance(item, str) else f'array #{index}'


__all__ = ['Unreadable', 'collect_images', 'strip_mask_steps', 'input_label', 'type_name']
