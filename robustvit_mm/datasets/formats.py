"""File formats and normalisation numbers used across the package (one home each).

- ``IMAGE_EXTENSIONS`` / ``is_image_file``: which files count as images (case-insensitive).
- ``encode_imagenet_s_mask`` / ``decode_imagenet_s_mask``: the ImageNet-S mask PNG encoding,
  id = G * 256 + R (B = 0); id 0 = "other" (background), 1000 = "ignore", any other id = the object.
- ``PAPER_NORM`` / ``IMAGENET_NORM``: ``ClsDataPreprocessor`` arguments (0-255 scale, RGB).
- ``exif_orientation`` / ``apply_exif_orientation`` / ``undo_exif_orientation``: one rule for turning an
  image and its mask, both ways.
- ``object_pixels`` / ``looks_inverted``: what counts as the object of a mask, and a swapped mask.
"""
import io

import numpy as np
from PIL import Image

# Lower case; compare with ``name.lower()`` (ImageNet ships ``.JPEG``). All of these decode with cv2.
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.ppm', '.pgm', '.tif', '.tiff', '.webp')

BACKGROUND_ID = 0  # ImageNet-S "other"
IGNORE_ID = 1000  # ImageNet-S "ignore" (object boundaries and ambiguous regions)

# The released code normalises every model, DeiT included, with mean = std = 0.5
# (docs/faithfulness.md#normalisation). Copy before changing: these dicts are shared.
PAPER_NORM = dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5], to_rgb=True)
# The usual ImageNet mean/std (torchvision's 0.485/0.456/0.406, 0.229/0.224/0.225) x 255.
IMAGENET_NORM = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)


def is_image_file(name: str) -> bool:
    """True for a visible file name with one of ``IMAGE_EXTENSIONS`` (any letter case)."""
    base = str(name).replace('\\', '/').rsplit('/', 1)[-1]
    return not base.startswith('.') and base.lower().endswith(IMAGE_EXTENSIONS)


def encode_imagenet_s_mask(mask, fg_id: int = 1) -> np.ndarray:
    """An ImageNet-S mask as an (H, W, 3) uint8 RGB array (R = id % 256, G = id // 256, B = 0).

    Args:
        mask: (H, W) bool (True = object, written as ``fg_id``; False = background 0) or integer
            ImageNet-S ids in [0, 65535] (written as they are, 1000 = ignore included).
        fg_id: the category id of the object for a bool mask (not 0 = background, 1000 = ignore).
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f'encode_imagenet_s_mask: expected an (H, W) mask, got shape {mask.shape}')
    if mask.dtype == bool:
        if not 0 < fg_id < 65536 or fg_id == IGNORE_ID:
            raise ValueError(f'encode_imagenet_s_mask: fg_id must be a category id (not 0 = '
                             f'background, {IGNORE_ID} = ignore, < 65536), got {fg_id}')
        ids = mask.astype(np.int64) * fg_id
    elif np.issubdtype(mask.dtype, np.integer):
        ids = mask.astype(np.int64)
        if ids.size and (ids.min() < 0 or ids.max() > 65535):
            raise ValueError('encode_imagenet_s_mask: ids must be in [0, 65535] (two 8-bit '
                             f'channels), got {ids.min()}..{ids.max()}')
    else:
        raise TypeError(f'encode_imagenet_s_mask: expected a bool or integer mask, got {mask.dtype}')
    rgb = np.zeros(ids.shape + (3,), dtype=np.uint8)
    rgb[..., 0] = ids % 256
    rgb[..., 1] = ids // 256
    return rgb


def decode_imagenet_s_mask(mask: np.ndarray, path: str = '?', channel_order: str = 'bgr') -> np.ndarray:
    """ImageNet-S ids (int32, (H, W)) of a decoded mask PNG.

    ``mask`` is a grayscale (H, W) array (the value is the id, so a 0/255 binary mask also works)
    or an 8-bit (H, W, 3|4) colour array in ``channel_order`` (``'bgr'``: what
    ``cv2.imread(..., IMREAD_UNCHANGED)`` returns; ``'rgb'``: PIL), decoded as id = G * 256 + R.
    The arithmetic is done in int32: uint8 * 256 overflows under NumPy 2
    (docs/faithfulness.md#mask-decoding). ``path`` only names the file in errors.
    """
    if channel_order not in ('bgr', 'rgb'):
        raise ValueError(f'decode_imagenet_s_mask: channel_order={channel_order!r}, expected '
                         "'bgr' or 'rgb'")
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[:, :, 0]
    if mask.ndim == 2:
        if not np.issubdtype(mask.dtype, np.integer):
            raise ValueError(f'mask {path!r}: grayscale mask of dtype {mask.dtype}, expected integers')
        return mask.astype(np.int32)
    if mask.ndim != 3 or mask.shape[2] not in (3, 4):
        raise ValueError(f'mask {path!r}: unsupported PNG layout with shape {mask.shape}; expected a '
                         'grayscale or RGB(A) PNG')
    if mask.dtype != np.uint8:
        raise ValueError(f'mask {path!r}: colour mask of dtype {mask.dtype}; the ImageNet-S encoding '
                         '(id = G*256 + R) needs 8-bit channels')
    red = mask[:, :, 2 if channel_order == 'bgr' else 0].astype(np.int32)
    green = mask[:, :, 1].astype(np.int32)
    return green * 256 + red


EXIF_ORIENTATION_TAG = 0x0112


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation (1-8) of an encoded image; 1 when it has none or cannot be parsed."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            value = int(img.getexif().get(EXIF_ORIENTATION_TAG, 1))
    except Exception:  # noqa: BLE001 - no readable EXIF means "as stored"; decoding errors come later
        return 1
    return value if 1 <= value <= 8 else 1


_ORIENT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],                        # mirror left-right
    3: lambda a: a[::-1, ::-1],                     # rotate 180
    4: lambda a: a[::-1],                           # mirror top-bottom
    5: lambda a: a.swapaxes(0, 1),                  # transpose
    6: lambda a: np.rot90(a, -1),                   # rotate 90 clockwise
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),      # transverse
    8: lambda a: np.rot90(a, 1),                    # rotate 90 counter-clockwise
}


def apply_exif_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an (H, W[, C]) array as a viewer shows a picture with that EXIF orientation (the same
    result as PIL's ``ImageOps.exif_transpose``), so an image and its mask get the same rule."""
    if orientation not in _ORIENT:
        raise ValueError(f'EXIF orientation must be 1-8, got {orientation!r}')
    return np.ascontiguousarray(_ORIENT[orientation](array))


def undo_exif_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """The inverse of :func:`apply_exif_orientation`: back from the picture a viewer shows to the
    stored pixels (a mask computed on the upright picture, written for the stored image)."""
    inverse = {6: 8, 8: 6}.get(orientation, orientation)  # the other turns are their own inverse
    return apply_exif_orientation(array, inverse)


# An "object" this large that reaches all four borders is most likely the background of an inverted
# mask (a 0/255 mask with the object at 0, a palette PNG whose index 0 is white): ImageNet-S masks
# outline one object.
INVERTED_MIN_AREA = 0.75


def object_pixels(ids: np.ndarray) -> np.ndarray:
    """Boolean (H, W): the pixels of an ImageNet-S id map that hold the object (not 0, not 1000)."""
    return (ids != BACKGROUND_ID) & (ids != IGNORE_ID)


def looks_inverted(obj: np.ndarray) -> bool:
    """True when the object covers more than ``INVERTED_MIN_AREA`` of the picture and touches all
    four borders: foreground and background are most likely swapped."""
    obj = np.asarray(obj, dtype=bool)
    if obj.size == 0 or obj.mean() <= INVERTED_MIN_AREA:
        return False
    return bool(obj[0].any() and obj[-1].any() and obj[:, 0].any() and obj[:, -1].any())
