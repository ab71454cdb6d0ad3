"""The built-in spurious-background benchmark: digit tiles with EXACT masks on class-coloured backgrounds.

Every image is ``image_size`` x ``image_size`` RGB (32 by default here, an 8 x 8 grid of 4-px ViT
patches; the demo and configs/synthetic/ use 24 px, ``DEMO_RECIPE``):

* the OBJECT is a handwritten digit glyph (scikit-learn's offline ``load_digits``, 8 x 8, upscaled
  bilinearly) drawn in a bright random colour on an opaque dark tile of 12 or 16 px (at 32 px; 8 or 12
  at 24 px) whose position is ALIGNED TO THE 4-PX PATCH GRID, so a patch is either all object or all
  background. The mask is the tile, exactly (before JPEG);
* the BACKGROUND of "background class" ``b`` is a class-specific colour (hue ``b / K``) with
  class-specific soft stripes (orientation ``(0, 90, 45, 135)[b % 4]`` degrees, period
  ``(5, 7, 9.5)[(b // 4) % 3]`` px), random stripe phase;
* in the biased splits (``pretrain``/``train``, ``masked``, ``masked_val``, ``test_in_dist``) the
  background class equals the label with probability ``p_match`` (independently per sample), otherwise
  it is uniform over the OTHER classes; in ``test_shifted`` it is ALWAYS uniform over the other classes.

Randomness that keeps it from being memorised: glyph colour/brightness, tile colour, tile size and
grid position, which digit sample of the class, background hue/value jitter, stripe phase, Gaussian
noise (sigma 3 grey levels). Train-side splits draw glyphs from the first half of each digit class's
``load_digits`` samples, test splits from the second half, so train and test glyph instances differ.
Classes 10..19 (``num_classes`` up to 20) are the digits rotated by 90 degrees.

Everything is a deterministic function of the seed (numpy ``Generator``, one independent stream per
split, so changing one split's size does not change the others).

:func:`render_sample` and :func:`generate_split` are pure numpy; ``write`` puts them on disk and
``dataset`` serves them in memory.
"""
from functools import lru_cache

import cv2
import numpy as np

__all__ = [
    'DEMO_RECIPE', 'GENERATOR_VERSION', 'PATCH_SIZE', 'SPLITS', 'DEFAULT_PER_CLASS', 'class_names',
    'tile_sizes', 'glyph_pool', 'background_style', 'render_background', 'render_sample',
    'sample_background_labels', 'generate_split'
]

GENERATOR_VERSION = 'synthetic-spurious-v1'
PATCH_SIZE = 4
BASE_TILE_SIZES = (12, 16)  # at 32 px; scaled with image_size and snapped to the patch grid
MAX_CLASSES = 20
JPEG_QUALITY = 95
NOISE_SIGMA = 3.0
# The sizes that configs/synthetic/ and tools/demo.py use (tools/make_synthetic.py's defaults). The
# image size must equal the configs' model.backbone.img_size; 3 masked images per class as the paper.
DEMO_RECIPE = dict(image_size=24, pretrain_per_class=600, masked_per_class=3, masked_val_per_class=5,
                   test_per_class=100, p_match=0.9)

# split kind -> (glyph pool, biased?, stream id). 'train' is an alias of 'pretrain'.
SPLITS = {
    'pretrain': ('train', True, 1),
    'masked': ('train', True, 2),
    'masked_val': ('train', True, 3),
    'test_in_dist': ('test', True, 4),
    'test_shifted': ('test', False, 5),
}
_ALIASES = {'train': 'pretrain'}
# Default number of samples per class of each split (write_benchmark and the in-memory dataset).
DEFAULT_PER_CLASS = {
    'pretrain': 500, 'masked': 10, 'masked_val': 5, 'test_in_dist': 100, 'test_shifted': 100
}

_STRIPE_ORIENTATIONS = (0.0, 90.0, 45.0, 135.0)
_STRIPE_PERIODS = (5.0, 7.0, 9.5)


def _split_kind(split_kind):
    kind = _ALIASES.get(split_kind, split_kind)
    if kind not in SPLITS:
        raise ValueError(f'unknown split {split_kind!r}; expected one of '
                         f'{sorted(set(SPLITS) | set(_ALIASES))}')
    return kind


def _check_num_classes(num_classes):
    if not isinstance(num_classes, (int, np.integer)) or not 2 <= num_classes <= MAX_CLASSES:
        raise ValueError(f'num_classes must be an int in [2, {MAX_CLASSES}], got {num_classes!r}')


def _check_image_size(image_size):
    if (not isinstance(image_size, (int, np.integer)) or image_size < 16
            or image_size % PATCH_SIZE):
        raise ValueError(f'image_size must be an int >= 16 and a multiple of {PATCH_SIZE}, '
                         f'got {image_size!r}')


def _check_p_match(p_match):
    if not 0.0 <= float(p_match) <= 1.0:
        raise ValueError(f'p_match must be in [0, 1], got {p_match!r}')


def class_names(num_classes=10):
    """Folder/class names ``class_0`` ... zero-padded so that sorted order is label order."""
    width = len(str(num_classes - 1))
    return tuple(f'class_{k:0{width}d}' for k in range(num_classes))


def tile_sizes(image_size=32):
    """Possible tile sizes (px) at ``image_size``: 12 and 16 at 32 px, scaled, on the patch grid."""
    sizes = []
    for t in BASE_TILE_SIZES:
        s = int(round(t * image_size / 32 / PATCH_SIZE)) * PATCH_SIZE
        sizes.append(min(max(s, PATCH_SIZE), image_size))
    return tuple(sorted(set(sizes)))


@lru_cache(maxsize=1)
def _digits():
    from sklearn.datasets import load_digits
    d = load_digits()
    return d.images.astype(np.float32) / 16.0, d.target.astype(np.int64)


@lru_cache(maxsize=None)
def glyph_pool(label, pool):
    """Indices into ``load_digits()`` usable for class ``label`` in ``pool`` ('train' or 'test').

    'train' = the first half of that digit's samples, 'test' = the second half (disjoint).
    """
    if pool not in ('train', 'test'):
        raise ValueError(f"pool must be 'train' or 'test', got {pool!r}")
    _, target = _digits()
    idx = np.flatnonzero(target == label % 10)
    half = len(idx) // 2
    return idx[:half] if pool == 'train' else idx[half:]


def _glyph(label, digit_index):
    """The 8 x 8 glyph (alpha in [0, 1]) of class ``label`` for ``load_digits`` sample ``digit_index``."""
    images, _ = _digits()
    return np.rot90(images[digit_index], k=label // 10)


def _hsv_to_rgb(h, s, v):
    """Scalar HSV (all in [0, 1]) -> RGB float array in [0, 255]."""
    h = (h % 1.0) * 6.0
    i = int(h) % 6
    f = h - int(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array(rgb, dtype=np.float32) * 255.0


def background_style(background_label, num_classes=10):
    """The class-specific part of background ``background_label``: (hue, orientation deg, period px)."""
    b = int(background_label)
    return (b / num_classes, _STRIPE_ORIENTATIONS[b % 4],
            _STRIPE_PERIODS[(b // 4) % len(_STRIPE_PERIODS)])


def render_background(rng, background_label, *, num_classes=10, image_size=32):
    """Float32 (H, W, 3) RGB background of class ``background_label`` (random jitter and phase)."""
    hue, angle, period = background_style(background_label, num_classes)
    hue += rng.uniform(-0.25, 0.25) / num_classes * 0.5     # at most 1/8 of the hue spacing
    sat = rng.uniform(0.55, 0.75)
    val = rng.uniform(0.75, 0.95)
    light = _hsv_to_rgb(hue, sat, val)
    dark = _hsv_to_rgb(hue, sat, val * rng.uniform(0.5, 0.65))
    phase = rng.uniform(0.0, 2 * np.pi)
    coords = np.arange(image_size, dtype=np.float32) + 0.5
    theta = np.deg2rad(angle)
    t = coords[None, :] * np.cos(theta) + coords[:, None] * np.sin(theta)
    s = np.clip(0.5 + 0.8 * np.sin(2 * np.pi * t / period + phase), 0.0, 1.0)
    return light + (dark - light) * s[..., None]


def render_sample(rng, label, background_label, *, num_classes=10, image_size=32, pool='train',
                  digit_index=None, return_info=False):
    """Render one sample.

    Args:
        rng (np.random.Generator): the only source of randomness.
        label (int): object class (digit ``label % 10``, rotated 90 degrees for ``label >= 10``).
        background_label (int): which class's background to draw.
        num_classes (int): K, sets the background hues. image_size (int): H = W, a multiple of 4.
        pool ('train' | 'test'): half of the ``load_digits`` samples to draw the glyph from.
        digit_index (int, optional): force this ``load_digits`` sample instead of a random one of the pool.
        return_info (bool): also return ``dict(digit_index, tile=(y0, x0, size))``.

    Returns:
        image (uint8 (H, W, 3) RGB), mask (uint8 (H, W), 1 exactly on the tile, 0 elsewhere)
        [, info].
    """
    _check_num_classes(num_classes)
    _check_image_size(image_size)
    if not (0 <= label < num_classes and 0 <= background_label < num_classes):
        raise ValueError(f'label {label} / background_label {background_label} out of range for '
                         f'num_classes={num_classes}')
    if digit_index is None:
        candidates = glyph_pool(int(label), pool)
        digit_index = int(candidates[rng.integers(len(candidates))])
    image = render_background(rng, background_label, num_classes=num_classes, image_size=image_size)

    size = int(rng.choice(tile_sizes(image_size)))
    cells = (image_size - size) // PATCH_SIZE + 1
    y0 = int(rng.integers(cells)) * PATCH_SIZE
    x0 = int(rng.integers(cells)) * PATCH_SIZE
    tile_colour = rng.uniform(5.0, 40.0, size=3).astype(np.float32)
    glyph_colour = _hsv_to_rgb(rng.uniform(), rng.uniform(0.0, 0.5), rng.uniform(0.7, 1.0))
    alpha = cv2.resize(np.ascontiguousarray(_glyph(label, digit_index)), (size, size),
                       interpolation=cv2.INTER_LINEAR)
    alpha = np.clip(alpha, 0.0, 1.0)[..., None]
    image[y0:y0 + size, x0:x0 + size] = tile_colour + (glyph_colour - tile_colour) * alpha

    image += rng.normal(0.0, NOISE_SIGMA, size=image.shape).astype(np.float32)
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    mask = np.zeros((image_size, image_size), dtype=np.uint8)
    mask[y0:y0 + size, x0:x0 + size] = 1
    if return_info:
        return image, mask, dict(digit_index=digit_index, tile=(y0, x0, size))
    return image, mask


def sample_background_labels(rng, labels, num_classes, p_match, shifted):
    """Background class per label: ``label`` w.p. ``p_match`` else uniform over the others.

    ``shifted=True``: always uniform over the other classes (``p_match`` ignored).
    """
    labels = np.asarray(labels, dtype=np.int64)
    other = rng.integers(0, num_classes - 1, size=labels.shape)
    other = other + (other >= labels)          # uniform over the K - 1 classes != label
    if shifted:
        return other
    match = rng.random(labels.shape) < p_match
    return np.where(match, labels, other)


def generate_split(num_per_class, p_match, seed, split_kind, *, num_classes=10, image_size=32,
                   random_share=0.0):
    """Generate a whole split in memory, class-major order (all of class 0, then class 1, ...).

    Args:
        num_per_class (int): samples per class. p_match (float): P(background == label) in the biased
            splits (ignored for 'test_shifted', which never matches). seed (int): non-negative.
        split_kind (str): 'pretrain' (alias 'train'), 'masked', 'masked_val', 'test_in_dist',
            'test_shifted'. Each has its own random stream derived from ``(seed, split)``; train-side
            splits use the first half of the digit samples, test splits the second half.
        random_share (float): share of the samples whose background is drawn uniformly over ALL
            classes instead (the rest keep ``p_match``); 0 leaves the split exactly as without it.

    Returns:
        dict of numpy arrays: ``images`` uint8 (N, H, W, 3) RGB, ``masks`` uint8 (N, H, W) {0, 1},
        ``labels`` int64 (N,), ``background_labels`` int64 (N,), ``digit_indices`` int64 (N,)
        (indices into ``sklearn.datasets.load_digits()``), ``tiles`` int64 (N, 3) = (y0, x0, size).
    """
    kind = _split_kind(split_kind)
    _check_num_classes(num_classes)
    _check_image_size(image_size)
    _check_p_match(p_match)
    if int(num_per_class) < 0:
        raise ValueError(f'num_per_class must be >= 0, got {num_per_class!r}')
    if int(seed) < 0:
        raise ValueError(f'seed must be a non-negative int, got {seed!r}')
    pool, biased, stream = SPLITS[kind]
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), stream]))

    n = int(num_per_class) * num_classes
    labels = np.repeat(np.arange(num_classes, dtype=np.int64), int(num_per_class))
    backgrounds = sample_background_labels(rng, labels, num_classes, float(p_match), not biased)
    if random_share:   # drawn only when used, so the other samples stay those of random_share=0
        random = rng.random(n) < float(random_share)
        backgrounds = np.where(random, rng.integers(0, num_classes, size=n), backgrounds)
    images = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    masks = np.empty((n, image_size, image_size), dtype=np.uint8)
    digit_indices = np.empty(n, dtype=np.int64)
    tiles = np.empty((n, 3), dtype=np.int64)
    for i in range(n):
        images[i], masks[i], info = render_sample(
            rng, int(labels[i]), int(backgrounds[i]), num_classes=num_classes,
            image_size=image_size, pool=pool, return_info=True)
        digit_indices[i] = info['digit_index']
        tiles[i] = info['tile']
    return dict(images=images, masks=masks, labels=labels, background_labels=backgrounds,
                digit_indices=digit_indices, tiles=tiles)
