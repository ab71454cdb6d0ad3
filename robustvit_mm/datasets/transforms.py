"""Checked image loading, foreground-mask loading and joint image + mask geometric transforms.

Result keys (CONTRIBUTING.md): ``fg_mask`` float32 (H, W), 1 = object; ``ignore_mask`` float32 (H, W),
1 = ImageNet-S "ignore" pixel. They stay numpy arrays until
``dict(type='PackInputs', algorithm_keys=['fg_mask', 'ignore_mask'])`` stores them, unchanged, as fields
of the data sample.
"""
import copy
import logging
from contextlib import contextmanager
from typing import Callable, Dict, List, Optional, Sequence, Union

import cv2
import mmcv
import numpy as np
from mmcv.transforms import BaseTransform, LoadImageFromFile, TransformBroadcaster
from mmcv.transforms.utils import cache_random_params
from mmengine import fileio
from mmengine.logging import print_log
from mmpretrain.registry import TRANSFORMS

from .formats import (BACKGROUND_ID, IGNORE_ID, INVERTED_MIN_AREA, apply_exif_orientation,
                      decode_imagenet_s_mask, exif_orientation, looks_inverted, object_pixels)

MASK_KEYS = ('fg_mask', 'ignore_mask')
# mmcv colour types that apply the EXIF orientation, and their stored-pixel twins.
ORIENTING_COLOR_TYPES = {'color': 'color_ignore_orientation',
                         'grayscale': 'grayscale_ignore_orientation'}


@TRANSFORMS.register_module()
class LoadCheckedImage(LoadImageFromFile):
    """``LoadImageFromFile`` whose every failure names the file, with an optional counted skip.

    The stock loader fails on a 0-byte file (an interrupted download) inside cv2 without naming it,
    and its ``ignore_empty=True`` lets mmengine swap the sample for a random other one with no trace.
    Here a missing file raises ``FileNotFoundError``; an empty or undecodable one (corrupt,
    truncated, not an image) is handled by ``on_corrupt``:

    - ``'error'`` (default): ``ValueError`` naming the file.
    - ``'skip'``: a warning naming the file and the running count of skipped images (per data-loader
      process), then ``None``, on which mmengine's ``BaseDataset`` draws another sample. For training
      pipelines only: in a test set mmengine refuses ``None``, and a validation set would silently
      change.

    Orientation: with ``color_type='color'`` (default) or ``'grayscale'`` the picture is turned by
    its EXIF orientation tag, as mmcv does; ``'color_ignore_orientation'`` keeps the stored pixels
    (what the authors' PIL loader gave, and what ImageNet-S masks are drawn on). Either way the
    stored pixels are decoded and turned here, by ``apply_exif_orientation``, and
    ``results['img_orientation']`` records the orientation applied (1 = as stored), so that
    ``LoadForegroundMask`` turns the mask by exactly the same rule.

    The other arguments are those of ``mmcv.transforms.LoadImageFromFile``.
    """

    def __init__(self, on_corrupt: str = 'error', **kwargs):
        if on_corrupt not in ('error', 'skip'):
            raise ValueError(f"LoadCheckedImage: on_corrupt={on_corrupt!r}, expected 'error' or 'skip'")
        if kwargs.get('ignore_empty'):
            raise ValueError("LoadCheckedImage: use on_corrupt='skip' instead of ignore_empty=True")
        super().__init__(**kwargs)
        self.on_corrupt = on_corrupt
        self.num_skipped = 0

    def _corrupt(self, path: str, reason: str) -> None:
        if self.on_corrupt == 'error':
            raise ValueError(f'LoadCheckedImage: image {path!r} {reason}; fix or remove it, or set '
                             "on_corrupt='skip' in the training pipeline")
        self.num_skipped += 1
        print_log(f'LoadCheckedImage: skipped image {path!r}: {reason} ({self.num_skipped} corrupt '
                  'image(s) skipped so far by this data loader process)', logger='current',
                  level=logging.WARNING)

    def transform(self, results: dict) -> Optional[dict]:
        path = results['img_path']
        try:
            data = fileio.get(path, backend_args=self.backend_args)
        except FileNotFoundError:
            raise FileNotFoundError(f'LoadCheckedImage: image file {path!r} not found') from None
        if not data:
            return self._corrupt(path, 'is empty (0 bytes)')
        flag = ORIENTING_COLOR_TYPES.get(self.color_type, self.color_type)
        try:
            img = mmcv.imfrombytes(data, flag=flag, backend=self.imdecode_backend)
        except Exception as error:  # decoders raise many types; all mean "cannot decode"
            img, detail = None, f' ({type(error).__name__}: {error})'
        else:
            detail = ''
        if img is None:
            return self._corrupt(path, f'cannot be decoded (corrupt, truncated or not an image){detail}')
        orientation = exif_orientation(data) if self.color_type in ORIENTING_COLOR_TYPES else 1
        if orientation != 1:
            img = apply_exif_orientation(img, orientation)
        if self.to_float32:
            img = img.astype(np.float32)
        results.update(img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2],
                       img_orientation=orientation)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(on_corrupt={self.on_corrupt!r}, '
                f'color_type={self.color_type!r}, imdecode_backend={self.imdecode_backend!r})')


@TRANSFORMS.register_module()
class LoadForegroundMask(BaseTransform):
    """Load an ImageNet-S mask PNG from ``results['mask_path']`` as foreground / ignore maps.

    Ids: 0 = "other" (background), 1000 = "ignore", any other id = the object category. At most one
    category id may occur (as the authors' code asserts), else ``ValueError`` naming the file and ids.
    Grayscale PNGs are read as ids directly (so a 0/255 binary mask also works).

    Added keys:

    - ``fg_mask`` (np.float32 (H, W)): 1 on the object.
    - ``ignore_mask`` (np.float32 (H, W)): 1 where the id is 1000, whatever ``ignore_pixels`` says
      (a loss can exclude those pixels).

    Args:
        ignore_pixels (str): What the ignore (1000) pixels are in ``fg_mask``: ``'background'``
            (default, as the authors' code, docs/faithfulness.md#ignore-pixels) or
            ``'foreground'``.
        allow_inverted (bool): Accept masks whose object covers more than 3/4 of the picture and
            touches all four borders. By default such a mask is a ``ValueError`` naming the file:
            it is most likely inverted (a 0/255 mask with the object at 0, a palette PNG whose
            index 0 is white). Set it for data where objects really fill the frame.
        backend_args (dict, optional): mmengine file backend arguments.

    A mask without one object pixel (all background, or all ignore: e.g. a 16-bit mask whose
    object value is 1000) is a ``ValueError`` naming the file: it would train the relevance to zero
    everywhere. ``ImageNetSMaskDataset(empty_masks='skip')`` leaves such images out and counts them.

    If ``results['img']`` is present, its height and width must equal the mask's; otherwise a
    ``ValueError`` names both files and sizes. This is deliberately an error rather than a silent
    resize: ImageNet-S masks are at the resolution of their image, so a mismatch means wrong pairing.

    Orientation: masks are drawn on the image's stored pixels (an EXIF orientation tag is not
    applied to them). The mask is turned by ``results['img_orientation']``, the orientation
    ``LoadCheckedImage`` applied to the image, so both follow one rule. An image loaded by another
    loader (no ``img_orientation``) whose file carries an orientation tag other than 1 is an error
    naming it: whether that loader turned the picture is unknown.
    """

    def __init__(self, ignore_pixels: str = 'background', allow_inverted: bool = False,
                 backend_args: Optional[dict] = None):
        if ignore_pixels not in ('background', 'foreground'):
            raise ValueError(f'LoadForegroundMask: ignore_pixels={ignore_pixels!r}, expected '
                             "'background' or 'foreground'")
        self.ignore_pixels = ignore_pixels
        self.allow_inverted = bool(allow_inverted)
        self.backend_args = copy.deepcopy(backend_args)

    def _read(self, path: str) -> np.ndarray:
        try:
            data = fileio.get(path, backend_args=self.backend_args)
        except FileNotFoundError:
            raise FileNotFoundError(f'LoadForegroundMask: mask file {path!r} not found') from None
        buf = np.frombuffer(data, np.uint8)
        mask = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
        if mask is None:
            raise ValueError(f'LoadForegroundMask: cannot decode mask {path!r} (corrupt or not an image)')
        return mask

    def _image_orientation(self, results: Dict) -> int:
        """The EXIF orientation applied to ``results['img']``; an error when it cannot be known."""
        if 'img_orientation' in results:
            return int(results['img_orientation'])
        path = results.get('img_path')
        try:
            tag = exif_orientation(fileio.get(path, backend_args=self.backend_args)) if path else 1
        except FileNotFoundError:
            tag = 1
        if tag != 1:
            raise ValueError(
                f'LoadForegroundMask: image {path!r} carries EXIF orientation {tag}, and the loader '
                'that read it did not say whether it turned the picture (ImageNet-S masks are drawn '
                f'on the stored pixels, so mask {results["mask_path"]!r} may be turned against it). '
                "Load images with dict(type='LoadCheckedImage', "
                "color_type='color_ignore_orientation') (stored pixels) or LoadCheckedImage() "
                '(image and mask turned alike).')
        return 1

    def transform(self, results: Dict) -> Dict:
        if 'mask_path' not in results:
            raise KeyError('LoadForegroundMask: results have no "mask_path" '
                           f'(keys: {sorted(results)})')
        path = results['mask_path']
        ids = decode_imagenet_s_mask(self._read(path), path)
        img = results.get('img')
        if img is not None:  # the same orientation rule as the image
            ids = apply_exif_orientation(ids, self._image_orientation(results))
        present = np.unique(ids)
        categories = present[(present != BACKGROUND_ID) & (present != IGNORE_ID)]
        if categories.size > 1:
            raise ValueError(f'LoadForegroundMask: mask {path!r} has {categories.size} category ids '
                             f'{categories.tolist()}; an ImageNet-S mask holds at most one')
        ignore = ids == IGNORE_ID
        fg = (ids != BACKGROUND_ID) & ~ignore
        if self.ignore_pixels == 'foreground':
            fg |= ignore

        if img is not None and tuple(img.shape[:2]) != ids.shape:
            raise ValueError(
                f'LoadForegroundMask: mask {path!r} is {ids.shape[0]}x{ids.shape[1]} (HxW) but image '
                f'{results.get("img_path", "?")!r} is {img.shape[0]}x{img.shape[1]}; mask_path and '
                'img_path must be the same picture at the same resolution')
        if categories.size == 0:
            raise ValueError(
                f'LoadForegroundMask: mask {path!r} has no object pixel (ids present: '
                f'{present.tolist()}; 0 = background, {IGNORE_ID} = ignore), so it would train the '
                "relevance to zero everywhere. Fix the mask, or leave such images out with "
                "ImageNetSMaskDataset(empty_masks='skip').")
        obj = object_pixels(ids)
        if not self.allow_inverted and looks_inverted(obj):
            raise ValueError(
                f'LoadForegroundMask: mask {path!r} looks inverted: its object (id '
                f'{int(categories[0])}) covers {obj.mean():.0%} of the picture and touches all four '
                f'borders (more than {INVERTED_MIN_AREA:.0%} and every border: the background, most '
                'likely; e.g. a 0/255 mask with the object at 0, or a palette PNG whose index 0 is '
                'white). Fix the mask, or set LoadForegroundMask(allow_inverted=True) if the objects '
                'of this data really fill the frame.')
        results['fg_mask'] = fg.astype(np.float32)
        results['ignore_mask'] = ignore.astype(np.float32)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(ignore_pixels={self.ignore_pixels!r}, '
                f'allow_inverted={self.allow_inverted})')


def _walk_transforms(obj, seen=None):
    """Every transform object reachable from ``obj`` (lists, Compose, wrappers, nested attributes)."""
    if seen is None:
        seen = set()
    if id(obj) in seen:
        return
    if isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _walk_transforms(item, seen)
        return
    if not isinstance(obj, BaseTransform):
        return
    seen.add(id(obj))
    yield obj
    for value in vars(obj).values():
        if isinstance(value, (BaseTransform, list, tuple)):
            yield from _walk_transforms(value, seen)


@TRANSFORMS.register_module()
class WithMask(TransformBroadcaster):
    """Apply geometric transforms to ``img``, ``fg_mask`` and ``ignore_mask`` with identical random
    parameters.

    Built on ``mmcv.transforms.TransformBroadcaster(share_random_params=True)``: the image is
    processed first (exactly as without the wrapper: same interpolation, same random draws, same
    ``img_shape``/``scale_factor``/``flip``/... metadata), then each mask with the cached random
    parameters of that draw. Only the image pass writes back other keys.

    For the masks only, every wrapped transform (nested ones included) temporarily gets
    ``interpolation=mask_interpolation``, ``backend='cv2'`` and ``pad_val=0``:

    - ``'bilinear'`` (default, as the authors' code, docs/faithfulness.md#reverse-mask): cv2
      ``INTER_LINEAR`` on float32, which equals torch ``interpolate(mode='bilinear',
      align_corners=False, antialias=False)``, the authors' torchvision-0.8 tensor resize.
      Boundary pixels become fractional.
    - ``'nearest'``: mmcv's nearest (cv2 ``INTER_NEAREST``, as mmseg resizes label maps); the
      masks stay exactly 0/1.

    Padding (``RandomCrop(padding=...)``, ``CenterCrop(auto_pad=True)``, ``Pad``) fills masks with 0.

    Wrap geometric transforms only (``Resize``, ``RandomResize``, ``RandomCrop``, ``CenterCrop``,
    ``RandomFlip``, ``ResizeEdge``, ``RandomResizedCrop``, ...); photometric ones belong outside.
    Absent mask keys are skipped, so the wrapper also works for plain images. Masks come out as
    C-contiguous float32 (H, W) arrays.

    Args:
        transforms (list[dict | callable]): The geometric transforms (built in mmpretrain's
            ``TRANSFORMS``, which falls back to mmcv's).
        mask_interpolation (str): ``'bilinear'`` or ``'nearest'``.
        mask_keys (Sequence[str]): Keys treated as masks. Default ``('fg_mask', 'ignore_mask')``.
    """

    def __init__(self,
                 transforms: List[Union[dict, Callable[[Dict], Dict]]],
                 mask_interpolation: str = 'bilinear',
                 mask_keys: Sequence[str] = MASK_KEYS):
        if mask_interpolation not in ('bilinear', 'nearest'):
            raise ValueError(f'WithMask: mask_interpolation={mask_interpolation!r}, expected '
                             "'bilinear' or 'nearest'")
        if isinstance(transforms, (dict, BaseTransform)) or callable(transforms):
            transforms = [transforms]
        built = [TRANSFORMS.build(t) if isinstance(t, dict) else t for t in transforms]
        self.mask_keys = tuple(mask_keys)
        super().__init__(
            transforms=built,
            mapping={'img': ['img', *self.mask_keys]},
            auto_remap=True,
            allow_nonexist_keys=True,
            share_random_params=True)
        self.mask_interpolation = mask_interpolation
        for t in _walk_transforms(list(self.transforms)):
            methods = getattr(t, '_methods_with_randomness', None)
            if methods and len(set(methods)) != len(methods):
                # mmpretrain 1.2.0: EfficientNetRandomCrop re-decorates rand_crop_params, which
                # appends the name twice to RandomResizedCrop's class-level list, so
                # cache_random_params counts two calls and raises. De-duplicate on this instance only.
                t._methods_with_randomness = list(dict.fromkeys(methods))

    def _mask_value(self, attr, value):
        """What attribute ``attr`` (now ``value``) of a wrapped transform becomes for the masks."""
        if attr == 'interpolation':
            return self.mask_interpolation
        if attr == 'backend':
            return 'cv2'
        if attr == 'pad_val':  # a number/sequence (RandomCrop) or dict(img=..., seg=...) (Pad)
            return {**value, 'img': 0} if isinstance(value, dict) else 0
        if attr == 'pad_cfg' and isinstance(value, dict):  # CenterCrop(auto_pad=True) builds a Pad
            return {**value, 'pad_val': 0}
        return value

    @contextmanager
    def _mask_mode(self):
        saved = []
        try:
            for t in _walk_transforms(list(self.transforms)):
                for attr in ('interpolation', 'backend', 'pad_val', 'pad_cfg'):
                    if attr in vars(t):
                        value = getattr(t, attr)
                        saved.append((t, attr, value))
                        setattr(t, attr, self._mask_value(attr, value))
            yield
        finally:
            for t, attr, value in reversed(saved):
                setattr(t, attr, value)

    def transform(self, results: Dict) -> Dict:
        if results.get('img') is None:
            raise KeyError('WithMask: results have no "img"; load the image before WithMask')
        img_hw = tuple(results['img'].shape[:2])
        present = [k for k in self.mask_keys if results.get(k) is not None]
        for key in present:
            mask = results[key]
            if not isinstance(mask, np.ndarray) or mask.ndim != 2 or mask.shape != img_hw:
                raise ValueError(
                    f'WithMask: results[{key!r}] must be a (H, W) numpy array of the image size '
                    f'{img_hw}, got {type(mask).__name__} of shape {getattr(mask, "shape", None)} '
                    f'(mask_path={results.get("mask_path", "?")!r}, '
                    f'img_path={results.get("img_path", "?")!r})')

        with cache_random_params(self.transforms):
            out = self._apply_transforms(results.copy())
            masks = {}
            with self._mask_mode():
                for key in present:
                    scatter = results.copy()
                    scatter['img'] = results[key].astype(np.float32, copy=False)
                    masks[key] = self._apply_transforms(scatter)['img']

        results.update(out)
        for key, mask in masks.items():
            if mask.ndim == 3 and mask.shape[2] == 1:
                mask = mask[:, :, 0]
            results[key] = np.ascontiguousarray(mask, dtype=np.float32)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(transforms={list(self.transforms)}, '
                f'mask_interpolation={self.mask_interpolation!r}, mask_keys={self.mask_keys})')
