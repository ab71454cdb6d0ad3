"""Joint image + mask geometric transforms (WithMask) and packing of the masks."""
import os.path as osp
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmcv.transforms import Compose
from mmpretrain.datasets.transforms import RandomResizedCrop
from mmpretrain.registry import TRANSFORMS

import robustvit_mm  # noqa: F401  (registers)
from robustvit_mm.datasets.transforms import WithMask
from stock_run_helpers import REPO


def _blob_mask(rng, h, w):
    """A random binary mask with a few rectangles (asymmetric, so flips and offsets show)."""
    m = np.zeros((h, w), np.float32)
    for _ in range(3):
        y0, x0 = rng.integers(0, h - 4), rng.integers(0, w - 4)
        m[y0:y0 + rng.integers(3, h // 2), x0:x0 + rng.integers(3, w // 2)] = 1
    return m


def _sample(rng, h=40, w=48):
    """Image whose red channel (BGR index 2) is fg_mask * 255 and green channel ignore_mask * 255."""
    fg = _blob_mask(rng, h, w)
    ign = _blob_mask(rng, h, w)
    img = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    img[..., 2] = (fg * 255).astype(np.uint8)
    img[..., 1] = (ign * 255).astype(np.uint8)
    return dict(img=img, img_shape=(h, w), ori_shape=(h, w), fg_mask=fg, ignore_mask=ign)


def _build(transforms, **kw):
    return TRANSFORMS.build(dict(type='WithMask', transforms=transforms, **kw))


def test_crop_and_flip_are_identical_for_image_and_masks_pixel_for_pixel():
    rng = np.random.default_rng(0)
    t = _build([
        dict(type='RandomCrop', crop_size=(24, 30), padding=3),
        dict(type='RandomFlip', prob=0.5, direction='horizontal'),
        dict(type='RandomFlip', prob=0.5, direction='vertical'),
    ])
    np.random.seed(0)
    flips, offsets = set(), set()
    for _ in range(60):
        out = t(_sample(rng))
        assert out['img'].shape[:2] == out['fg_mask'].shape == out['ignore_mask'].shape == (24, 30)
        np.testing.assert_array_equal(out['img'][..., 2], out['fg_mask'] * 255)
        np.testing.assert_array_equal(out['img'][..., 1], out['ignore_mask'] * 255)
        assert out['fg_mask'].dtype == np.float32 and out['fg_mask'].flags.c_contiguous
        flips.add(out['flip'])
        offsets.add(int(out['fg_mask'].sum()))
    assert flips == {True, False}  # both branches were exercised
    assert len(offsets) > 10


def test_resize_crop_flip_keep_image_and_mask_aligned():
    """The training recipe: aspect-distorting resize, random crop, flip (image resized by cv2 here,
    so red/255 and the bilinear float mask agree up to uint8 rounding)."""
    rng = np.random.default_rng(1)
    t = _build([
        dict(type='Resize', scale=(64, 64), keep_ratio=False),
        dict(type='RandomCrop', crop_size=56),
        dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    ])
    np.random.seed(1)
    for _ in range(30):
        out = t(_sample(rng))
        assert out['fg_mask'].shape == (56, 56)
        diff = np.abs(out['img'][..., 2].astype(np.float32) / 255 - out['fg_mask'])
        assert diff.max() <= 1.5 / 255
        assert out['img_shape'][:2] == (56, 56)


def test_random_resized_crop_works_jointly_and_fix_is_narrow():
    class_level = list(RandomResizedCrop._methods_with_randomness)
    rng = np.random.default_rng(2)
    t = _build([dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.2, 1.0)),
                dict(type='RandomFlip', prob=0.5)])
    np.random.seed(2)
    sizes = set()
    for _ in range(30):
        s = _sample(rng)
        out = t(s)  # stock TransformBroadcaster raises "invoked 2 times" here
        assert out['fg_mask'].shape == (32, 32)
        diff = np.abs(out['img'][..., 2].astype(np.float32) / 255 - out['fg_mask'])
        assert diff.max() <= 1.5 / 255
        sizes.add(float(out['fg_mask'].sum()))
    assert len(sizes) > 10
    # only the wrapped instance was changed, not mmpretrain's class attribute
    assert RandomResizedCrop._methods_with_randomness == class_level


def test_image_is_transformed_exactly_as_without_the_wrapper():
    """Same seed: WithMask's image and metadata equal the plain transforms' (pillow image backend,
    bicubic RandomResizedCrop), i.e. the wrapper never changes the image path."""
    cfgs = [
        dict(type='ResizeEdge', scale=50, edge='short', backend='pillow', interpolation='bilinear'),
        dict(type='RandomResizedCrop', scale=36, interpolation='bicubic', backend='pillow'),
        dict(type='RandomFlip', prob=0.5, direction='horizontal'),
        dict(type='CenterCrop', crop_size=30),
    ]
    t = _build(cfgs)
    plain = Compose([TRANSFORMS.build(c) for c in cfgs])
    rng = np.random.default_rng(3)
    for i in range(10):
        s = _sample(rng)
        np.random.seed(i)
        a = t(dict(s))
        np.random.seed(i)
        b = plain({k: v for k, v in s.items() if k not in ('fg_mask', 'ignore_mask')})
        np.testing.assert_array_equal(a['img'], b['img'])
        for key in ('img_shape', 'scale_factor', 'flip', 'flip_direction'):
            assert a[key] == b[key], key
        assert a['fg_mask'].shape == a['img'].shape[:2]
    # the image went through pillow/bicubic and the masks through cv2/bilinear; attributes restored
    inner = list(t.transforms)
    assert (inner[0].backend, inner[0].interpolation) == ('pillow', 'bilinear')
    assert (inner[1].backend, inner[1].interpolation) == ('pillow', 'bicubic')


def test_plain_images_without_masks_pass_through():
    t = _build([dict(type='CenterCrop', crop_size=20)])
    img = np.arange(40 * 48 * 3, dtype=np.uint8).reshape(40, 48, 3)
    out = t(dict(img=img))
    assert out['img'].shape == (20, 20, 3) and 'fg_mask' not in out and 'ignore_mask' not in out
    out = t(dict(img=img, fg_mask=np.ones((40, 48), np.float32)))  # one mask only
    assert out['fg_mask'].shape == (20, 20) and 'ignore_mask' not in out


@pytest.mark.parametrize('src,dst', [((40, 48), (256, 256)), ((300, 500), (224, 224)),
                                     ((97, 131), (50, 37))])
def test_bilinear_mask_equals_torch_without_antialias(src, dst):
    rng = np.random.default_rng(4)
    mask = (rng.random(src) > 0.5).astype(np.float32)
    img = np.zeros(src + (3,), np.uint8)
    t = _build([dict(type='Resize', scale=dst[::-1], keep_ratio=False, backend='pillow')])
    out = t(dict(img=img, fg_mask=mask))['fg_mask']
    x = torch.from_numpy(mask)[None, None]
    ref = F.interpolate(x, size=dst, mode='bilinear', align_corners=False, antialias=False)[0, 0]
    np.testing.assert_allclose(out, ref.numpy(), atol=1e-4)
    fractional = (out > 1e-6) & (out < 1 - 1e-6)
    assert fractional.any()  # bilinear: soft boundaries, as the authors' code
    if dst[0] < src[0]:  # downsampling: the antialiased resize is clearly different
        aa = F.interpolate(x, size=dst, mode='bilinear', align_corners=False, antialias=True)[0, 0]
        assert np.abs(out - aa.numpy()).max() > 0.1


def test_nearest_mask_stays_binary_and_aligned():
    rng = np.random.default_rng(5)
    t = _build([dict(type='RandomResizedCrop', scale=64, backend='pillow'),
                dict(type='RandomFlip', prob=0.5)], mask_interpolation='nearest')
    np.random.seed(5)
    for _ in range(10):
        s = _sample(rng)
        out = t(s)
        assert set(np.unique(out['fg_mask']).tolist()) <= {0.0, 1.0}
        assert set(np.unique(out['ignore_mask']).tolist()) <= {0.0, 1.0}
        assert out['fg_mask'].dtype == np.float32
    # the same image through bilinear: soft edges; through nearest: none
    big = dict(img=np.zeros((40, 48, 3), np.uint8), fg_mask=_blob_mask(rng, 40, 48))
    up = dict(type='Resize', scale=(100, 90), keep_ratio=False)
    soft = _build([up])(dict(big))['fg_mask']
    hard = _build([up], mask_interpolation='nearest')(dict(big))['fg_mask']
    assert ((soft > 0) & (soft < 1)).any()
    assert set(np.unique(hard).tolist()) <= {0.0, 1.0}
    assert np.abs(soft - hard).mean() < 0.1  # same geometry


def test_nested_random_resize_and_padding_fill_masks_with_background():
    t = _build([
        dict(type='RandomResize', scale=[(30, 30), (60, 60)], keep_ratio=False,
             resize_type='Resize', interpolation='bicubic'),
        dict(type='RandomCrop', crop_size=70, pad_if_needed=True, pad_val=(255, 255, 255)),
    ])
    rng = np.random.default_rng(6)
    np.random.seed(6)
    for _ in range(5):
        out = t(_sample(rng))
        assert out['fg_mask'].shape == out['img'].shape[:2]
        # the padded border is white in the image and background (0) in both masks
        assert (out['img'][0] == 255).all() and (out['fg_mask'][0] == 0).all()
        assert (out['ignore_mask'][0] == 0).all()
    inner = list(t.transforms)
    assert inner[0].resize.interpolation == 'bicubic' and inner[1].pad_val == (255, 255, 255)


def test_mask_of_wrong_size_is_an_error():
    t = _build([dict(type='CenterCrop', crop_size=8)])
    with pytest.raises(ValueError, match=r"fg_mask.*m\.png"):
        t(dict(img=np.zeros((20, 20, 3), np.uint8), fg_mask=np.zeros((10, 20), np.float32),
               mask_path='m.png'))
    with pytest.raises(ValueError, match='mask_interpolation'):
        WithMask(transforms=[], mask_interpolation='bicubic')


def test_pack_inputs_keeps_masks_as_hw_arrays_in_the_data_sample():
    rng = np.random.default_rng(7)
    pipe = Compose([
        _build([dict(type='RandomCrop', crop_size=32), dict(type='RandomFlip', prob=1.0)]),
        TRANSFORMS.build(dict(type='PackInputs', algorithm_keys=['fg_mask', 'ignore_mask'])),
    ])
    s = _sample(rng)
    s['gt_label'] = 3
    packed = pipe(s)
    ds = packed['data_samples']
    assert packed['inputs'].shape == (3, 32, 32)
    assert isinstance(ds.fg_mask, np.ndarray) and ds.fg_mask.shape == (32, 32)
    assert ds.fg_mask.dtype == np.float32 and ds.ignore_mask.shape == (32, 32)
    assert ds.flip is True
    np.testing.assert_array_equal(packed['inputs'][2].numpy(), ds.fg_mask * 255)
    torch.from_numpy(ds.fg_mask)  # contiguous, no negative strides after the flip


@pytest.mark.parametrize('backend', ['cv2', 'pillow'])
def test_load_checked_image_reads_like_the_stock_loader_and_names_bad_files(tmp_path, backend):
    import cv2
    rng = np.random.default_rng(0)
    good = str(tmp_path / 'good.png')
    pixels = rng.integers(0, 256, size=(12, 10, 3), dtype=np.uint8)
    cv2.imwrite(good, pixels)
    checked = TRANSFORMS.build(dict(type='LoadCheckedImage', imdecode_backend=backend))
    stock = TRANSFORMS.build(dict(type='LoadImageFromFile', imdecode_backend=backend))
    ours, theirs = checked(dict(img_path=good)), stock(dict(img_path=good))
    np.testing.assert_array_equal(ours['img'], theirs['img'])
    assert ours['img_shape'] == theirs['img_shape'] == (12, 10)

    with pytest.raises(FileNotFoundError, match=r"image file '.*missing\.png' not found"):
        checked(dict(img_path=str(tmp_path / 'missing.png')))
    bad = tmp_path / 'bad.png'
    bad.write_bytes(b'GIF89a not really')
    with pytest.raises(ValueError, match=re.escape(str(bad)) + r"' cannot be decoded .*on_corrupt='skip'"):
        checked(dict(img_path=str(bad)))

    skipping = TRANSFORMS.build(dict(type='LoadCheckedImage', imdecode_backend=backend,
                                     on_corrupt='skip'))
    assert skipping(dict(img_path=str(bad))) is None and skipping(dict(img_path=str(bad))) is None
    assert skipping.num_skipped == 2
    assert skipping(dict(img_path=good))['img'].shape == (12, 10, 3)


def test_load_checked_image_rejects_unknown_options():
    with pytest.raises(ValueError, match="on_corrupt='ignore'"):
        TRANSFORMS.build(dict(type='LoadCheckedImage', on_corrupt='ignore'))
    with pytest.raises(ValueError, match="on_corrupt='skip' instead of ignore_empty"):
        TRANSFORMS.build(dict(type='LoadCheckedImage', ignore_empty=True))


# ------------------------------------------------------------------------------- EXIF orientation
def test_apply_exif_orientation_turns_like_pil_for_all_eight_tags():
    import io

    from PIL import Image, ImageOps

    from robustvit_mm.datasets.formats import apply_exif_orientation, exif_orientation
    stored = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for tag in range(1, 9):
        img = Image.fromarray(stored)
        exif = img.getexif()
        exif[0x0112] = tag
        buf = io.BytesIO()
        img.save(buf, format='PNG', exif=exif.tobytes())
        assert exif_orientation(buf.getvalue()) == tag
        shown = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue()))))
        np.testing.assert_array_equal(apply_exif_orientation(stored, tag), shown)


def _exif_rotated_pair(tmp_path, hw):
    """A real JPEG with EXIF orientation 6 (shown turned 90 degrees clockwise) and its ImageNet-S
    mask PNG drawn on the STORED pixels, as ImageNet-S masks are. The object is the top-left block."""
    from PIL import Image

    from robustvit_mm.datasets import encode_imagenet_s_mask
    h, w = hw
    stored = np.full((h, w, 3), 30, np.uint8)
    stored[:h // 2, :w // 3] = 230
    mask = np.zeros((h, w), bool)
    mask[:h // 2, :w // 3] = True
    img = Image.fromarray(stored)
    exif = img.getexif()
    exif[0x0112] = 6
    img_path, mask_path = str(tmp_path / 'a.JPEG'), str(tmp_path / 'a.png')
    img.save(img_path, format='JPEG', quality=95, exif=exif.tobytes())
    Image.fromarray(encode_imagenet_s_mask(mask, fg_id=919)).save(mask_path)
    return img_path, mask_path


def _iou_with_bright(results):
    bright = results['img'].mean(-1) > 128
    fg = results['fg_mask'] > 0.5
    return (bright & fg).sum() / max((bright | fg).sum(), 1)


@pytest.mark.parametrize('hw', [(32, 32), (24, 40)], ids=['square', 'non-square'])
def test_exif_rotated_jpeg_and_its_mask_follow_one_orientation_rule(tmp_path, hw):
    """Before: the image was turned by its EXIF tag and the mask was not (square: IoU 0.14 with
    the object; non-square: an error blaming the pairing)."""
    from mmengine.config import Config

    from robustvit_mm.datasets.formats import apply_exif_orientation
    img_path, mask_path = _exif_rotated_pair(tmp_path, hw)
    item = dict(img_path=img_path, mask_path=mask_path)
    mask = TRANSFORMS.build(dict(type='LoadForegroundMask'))

    # The paper's config reads the stored pixels: image and mask as drawn.
    cfg = Config.fromfile(osp.join(REPO, 'configs',
                                   '_base_', 'datasets', 'imagenet_s_masks.py'))
    stored = mask(TRANSFORMS.build(cfg.val_pipeline[0])(dict(item)))
    assert stored['img'].shape[:2] == hw and stored['img_orientation'] == 1
    assert _iou_with_bright(stored) > 0.95

    # mmcv's default (the picture as a viewer shows it): the mask is turned alike.
    turned = mask(TRANSFORMS.build(dict(type='LoadCheckedImage'))(dict(item)))
    assert turned['img'].shape[:2] == hw[::-1] and turned['img_orientation'] == 6
    assert _iou_with_bright(turned) > 0.95
    np.testing.assert_array_equal(turned['fg_mask'], apply_exif_orientation(stored['fg_mask'], 6))
    stock = TRANSFORMS.build(dict(type='LoadImageFromFile'))(dict(item))
    np.testing.assert_allclose(turned['img'], stock['img'], atol=0)  # what mmcv itself shows

    # A loader that does not say what it did: an error naming the image and its orientation.
    with pytest.raises(ValueError, match=re.escape(f"image {img_path!r} carries EXIF orientation "
                                                   '6') + ".*color_ignore_orientation"):
        mask(dict(stock))

    # End to end through the paper's validation pipeline (resize, centre crop, pack).
    sample = Compose([TRANSFORMS.build(t) for t in cfg.val_pipeline])(dict(item))
    fg = sample['data_samples'].fg_mask > 0.5
    bright = sample['inputs'].float().mean(0).numpy() > 128
    assert (fg & bright).sum() / (fg | bright).sum() > 0.9
