"""TokenCut masks: normalised cut, bilateral solver, DINO loading, the folder tool end to end."""
import argparse
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from robustvit_mm.datasets import decode_imagenet_s_mask, encode_imagenet_s_mask
from robustvit_mm.masks import (bilateral_solve, build_dino_vitb16, generate_tokencut_masks,
                                load_image, ncut, tokencut_mask, write_mask_png)
from robustvit_mm.masks import tokencut as tc
from robustvit_mm.masks import tokencut_batch
from robustvit_mm.masks.bilateral_solver import BilateralGrid
from robustvit_mm.masks.tokencut import (bipartition_with_seed, dino_last_keys,
                                         dino_position_embedding, load_dino_state_dict,
                                         ncut_affinity, postprocess_refined, preprocess_image,
                                         seed_component)
from robustvit_mm.masks.tokencut_batch import list_images, make_panel
from stock_run_helpers import REPO

H, W = 48, 64


# ------------------------------------------------------------------------------------------ helpers
def _tiny_vit():
    """A 2-block, 48-d timm ViT/16 (same code path as DINO ViT-B/16, fast)."""
    import timm

    torch.manual_seed(0)
    return timm.create_model('vit_base_patch16_224', num_classes=0, dynamic_img_size=True,
                             pretrained=False, depth=2, embed_dim=48, num_heads=3).eval()


def _ids(path):
    """ImageNet-S id map of a PNG: id = G*256 + R (cv2 reads BGR)."""
    arr = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    assert arr is not None and arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8
    assert (arr[..., 0] == 0).all()  # blue channel unused
    return decode_imagenet_s_mask(arr, path)


def _two_colour_image(shape=(H, W), seed=0):
    rs = np.random.RandomState(seed)
    img = np.zeros(shape + (3,), np.uint8)
    img[:] = rs.randint(0, 100, 3)
    h, w = shape
    img[h // 4:3 * h // 4, w // 4:3 * w // 4] = rs.randint(150, 255, 3)
    return img


def _write_tree(root):
    """root/<class>/<image> with JPEG, png and jpg files of different sizes, and a stray text file."""
    paths = {}
    for cls, name, shape in [('n01443537', 'a.JPEG', (H, W)), ('n01443537', 'b.png', (W, H)),
                             ('n01484850', 'c.jpg', (40, 72))]:
        os.makedirs(osp.join(root, cls), exist_ok=True)
        path = osp.join(root, cls, name)
        Image.fromarray(_two_colour_image(shape, seed=len(paths))).save(path)
        paths[f'{cls}/{osp.splitext(name)[0]}'] = path
    with open(osp.join(root, 'n01484850', 'notes.txt'), 'w') as f:
        f.write('not an image')
    return paths


# ------------------------------------------------------------------------------- normalised cut
def _planted_features(object_mask, dim=32, noise=0.05, seed=0):
    """Patch features: one direction on the object, an orthogonal one elsewhere, plus noise."""
    rs = np.random.RandomState(seed)
    fg_dir, bg_dir = np.zeros(dim), np.zeros(dim)
    fg_dir[0], bg_dir[1] = 1.0, 1.0
    flat = object_mask.reshape(-1)
    feats = np.where(flat[:, None], fg_dir, bg_dir) + noise * rs.randn(flat.size, dim)
    return feats.astype(np.float32)


@pytest.mark.parametrize('where', ['centre', 'corner', 'L-shape'])
def test_ncut_two_clusters_returns_exactly_the_planted_object(where):
    grid = np.zeros((9, 12), bool)
    if where == 'centre':
        grid[3:6, 4:9] = True
    elif where == 'corner':
        grid[:4, -3:] = True
    else:
        grid[2:7, 2:4] = True
        grid[5:7, 4:8] = True
    res = ncut(_planted_features(grid), grid.shape)
    np.testing.assert_array_equal(res.mask, grid)
    assert grid.flat[res.seed]
    # The eigenvector is oriented so that the foreground is above its mean.
    assert (res.eigenvector[grid] > res.eigenvector.mean()).all()


def test_ncut_affinity_is_binarised_at_tau():
    feats = np.array([[1.0, 0.0], [np.cos(1.0), np.sin(1.0)], [0.0, 1.0]])  # cos 0.54, 0.0, 0.84
    A = ncut_affinity(feats, tau=0.2, eps=1e-5)
    np.testing.assert_allclose(A, [[1, 1, 1e-5], [1, 1, 1], [1e-5, 1, 1]])
    A = ncut_affinity(feats, tau=0.6, eps=1e-5)
    np.testing.assert_allclose(A, [[1, 1e-5, 1e-5], [1e-5, 1, 1], [1e-5, 1, 1]])


def test_seed_on_the_mean_split_side_keeps_the_partition():
    v = np.array([0.9, -0.1, -0.2, -0.3])  # mean 0.075: partition [T, F, F, F]; seed 0 is in it
    fg, seed, v_out = bipartition_with_seed(v)
    assert seed == 0
    np.testing.assert_array_equal(fg, [True, False, False, False])
    np.testing.assert_array_equal(v_out, v)


def test_seed_below_the_mean_flips_the_partition_and_the_vector():
    v = np.array([0.1, 0.2, -0.9, 0.3, 0.25])  # mean -0.01: v > mean = [T, T, F, T, T]; seed 2
    fg, seed, v_out = bipartition_with_seed(v)
    assert seed == 2
    np.testing.assert_array_equal(fg, [False, False, True, False, False])
    np.testing.assert_array_equal(v_out, -v)


def test_seed_component_keeps_only_the_4_connected_blob_of_the_seed():
    m = np.zeros((6, 7), bool)
    m[0:2, 0:2] = True          # blob A
    m[2, 2] = True              # touches A only diagonally: a separate component
    m[3:6, 4:7] = True          # blob B
    seed_b = np.ravel_multi_index((4, 5), m.shape)
    expected = np.zeros_like(m)
    expected[3:6, 4:7] = True
    np.testing.assert_array_equal(seed_component(m, seed_b), expected)
    expected = np.zeros_like(m)
    expected[0:2, 0:2] = True
    np.testing.assert_array_equal(seed_component(m, 0), expected)
    assert not seed_component(m, np.ravel_multi_index((5, 0), m.shape)).any()  # seed off the mask


def test_ncut_keeps_only_the_seed_blob_when_the_foreground_cluster_has_two_blobs():
    grid = np.zeros((9, 12), bool)
    grid[1:4, 1:4] = True
    grid[5:8, 7:11] = True
    res = ncut(_planted_features(grid), grid.shape)
    np.testing.assert_array_equal(res.partition, grid)      # the cut finds both blobs
    labels, _ = ndimage.label(grid)
    np.testing.assert_array_equal(res.mask, labels == labels.flat[res.seed])  # keeps one
    assert res.mask.sum() in (9, 12)


def test_ncut_rejects_grids_too_small_for_a_cut():
    with pytest.raises(ValueError, match='at least 3 patches'):
        ncut(np.ones((2, 8)), (1, 2))


# ------------------------------------------------------------------------------ bilateral solver
def test_bilateral_solver_keeps_a_clean_binary_mask_fixed():
    yy, xx = np.mgrid[:H, :W]
    disk = (yy - 24) ** 2 + (xx - 30) ** 2 < 14 ** 2
    img = np.zeros((H, W, 3), np.uint8)
    img[:] = (40, 90, 200)
    img[disk] = (240, 200, 30)
    out = bilateral_solve(img, disk.astype(float))
    np.testing.assert_allclose(out, disk.astype(float), atol=1e-6)
    np.testing.assert_array_equal(postprocess_refined(out), disk)


def test_bilateral_solver_snaps_a_blurred_shifted_mask_to_the_image_edge():
    yy, xx = np.mgrid[:H, :W]
    disk = (yy - 24) ** 2 + (xx - 30) ** 2 < 14 ** 2
    img = np.zeros((H, W, 3), np.uint8)
    img[:] = (40, 90, 200)
    img[disk] = (240, 200, 30)
    coarse = ((yy - 27) ** 2 + (xx - 35) ** 2 < 14 ** 2).astype(float)  # shifted by (3, 5) px
    target = ndimage.gaussian_filter(coarse, 3)
    assert ((target > 0.5) != disk).sum() > 100  # the input is clearly off
    out = bilateral_solve(img, target)
    np.testing.assert_array_equal(out > 0.5, disk)


def test_bilateral_solver_straight_edge_and_constant_target():
    img = np.zeros((H, W, 3), np.uint8)
    img[:, :W // 2] = (30, 60, 200)
    img[:, W // 2:] = (230, 200, 40)
    ramp = np.clip((np.arange(W) - (W // 2 + 6) + 10) / 20.0, 0, 1)  # 0.5 crossing 6 px right
    out = bilateral_solve(img, np.tile(ramp, (H, 1)))
    assert out[:, :W // 2].max() < 0.5 < out[:, W // 2:].min()
    np.testing.assert_allclose(bilateral_solve(img, np.full((H, W), 0.7)), 0.7, atol=1e-9)


def test_bilateral_grid_truncates_positions_as_the_original_solver():
    """Oracle: the original TokenCut solver's vertices, from its description: pixel (x, y) with YUV
    colour goes to the integer parts of (x/16, y/16, Y/16, U/8, V/8); two vertices are neighbours
    when these differ by 1 along one axis."""
    rs = np.random.RandomState(3)
    img = rs.randint(0, 256, (20, 36, 3)).astype(np.uint8)
    img[:, :12] = (17, 200, 90)                                       # and a flat region
    rgb = img.astype(np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    yuv = np.stack([0.299 * r + 0.587 * g + 0.114 * b,
                    128 - 0.168736 * r - 0.331264 * g + 0.5 * b,
                    128 + 0.5 * r - 0.418688 * g - 0.081312 * b], axis=-1)
    yy, xx = np.mgrid[:20, :36]
    coords = np.stack([(xx / 16).astype(int), (yy / 16).astype(int), (yuv[..., 0] / 16).astype(int),
                       (yuv[..., 1] / 8).astype(int), (yuv[..., 2] / 8).astype(int)],
                      axis=-1).reshape(-1, 5)
    vertices, pixel_vertex = np.unique(coords, axis=0, return_inverse=True)
    pixel_vertex = pixel_vertex.reshape(-1)

    def neighbours(grid_of, verts):
        n = len(verts)
        diff = np.abs(verts[:, None, :] - verts[None, :, :]).sum(-1)
        return {(grid_of[i], grid_of[j]) for i in range(n) for j in range(n) if diff[i, j] == 1}

    for coordinates, agrees in (('truncate', True), ('round', False)):
        grid = BilateralGrid(img, 16, 16, 8, coordinates=coordinates)
        # The same partition of the pixels into vertices (a one-to-one map between the labels).
        pairs = set(zip(pixel_vertex.tolist(), grid.pixel_to_vertex.tolist()))
        same = grid.nvertices == len(vertices) == len(pairs)
        assert same == agrees, coordinates
        if agrees:
            ours_of = dict(pairs)                                     # oracle vertex -> ours
            off = grid.B - 2.0 * 5 * __import__('scipy').sparse.identity(grid.nvertices)
            ours = {(int(i), int(j)) for i, j in zip(*off.nonzero())}
            assert ours == neighbours([ours_of[k] for k in range(len(vertices))], vertices)
    with pytest.raises(ValueError, match='coordinates'):
        BilateralGrid(img, coordinates='floor')


def test_postprocess_keeps_the_largest_foreground_blob_and_fills_holes():
    soft = np.zeros((10, 10))
    soft[:, :7] = 0.9            # big blob (70 px) ...
    soft[4, 3] = 0.1             # ... with a hole
    soft[:2, 8:] = 0.8           # small blob
    out = postprocess_refined(soft)
    expected = np.zeros((10, 10), bool)
    expected[:, :7] = True
    # The authors' "second-largest label including background" would return the background
    # (30 px) here: the foreground blob is larger than the background.
    np.testing.assert_array_equal(out, expected)
    assert not postprocess_refined(np.zeros((5, 5))).any()


# ----------------------------------------------------------------------------- DINO features
def test_preprocess_rounds_to_patch_multiples_and_normalises():
    mean = (np.array([0.485, 0.456, 0.406]) * 255).round().astype(np.uint8)
    img = Image.fromarray(np.tile(mean, (41, 70, 1)))
    x, grid = preprocess_image(img)
    assert grid == (3, 4) and tuple(x.shape) == (1, 3, 48, 64)  # round(41/16)=3, round(70/16)=4
    assert x.abs().max() < 0.01


def test_dino_last_keys_are_the_last_blocks_keys_heads_concatenated():
    model = _tiny_vit()
    x = torch.randn(2, 3, 32, 48)
    seen = {}
    blk = model.blocks[-1]
    handle = blk.attn.register_forward_pre_hook(lambda m, args: seen.__setitem__('x', args[0]))
    keys = dino_last_keys(model, x)
    handle.remove()
    dim = model.embed_dim
    w_k = blk.attn.qkv.weight[dim:2 * dim]
    b_k = blk.attn.qkv.bias[dim:2 * dim]
    expected = (seen['x'] @ w_k.T + b_k)[:, 1:]  # CLS dropped; heads are contiguous slices
    assert keys.shape == (2, 6, dim)
    torch.testing.assert_close(keys, expected)


def _dino_resize_oracle(grid_side, out_len):
    """(out_len, grid_side) matrix of DINO's 1-D bicubic resampling, from the method description:
    the scale factor is (out_len + 0.1) / sqrt(N), output j samples the input at
    (j + 0.5) / scale - 0.5 with the cubic convolution kernel (a = -0.75), edge samples repeated."""
    scale = (out_len + 0.1) / grid_side

    def cubic(t, a=-0.75):
        t = abs(t)
        if t <= 1:
            return (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1
        return a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a if t < 2 else 0.0

    weights = np.zeros((out_len, grid_side))
    for j in range(out_len):
        src = (j + 0.5) / scale - 0.5
        base = int(np.floor(src))
        for i in range(base - 1, base + 3):
            weights[j, min(max(i, 0), grid_side - 1)] += cubic(src - i)
    return weights


@pytest.mark.parametrize('grid', [(3, 4), (20, 12), (14, 14)])
def test_position_embedding_is_resized_as_dino_does(grid):
    torch.manual_seed(1)
    side, dim = 14, 5
    pos = torch.randn(1, 1 + side * side, dim, dtype=torch.float64)
    out = dino_position_embedding(pos, grid)
    h, w = grid
    patches = pos[0, 1:].reshape(side, side, dim).numpy()
    expected = np.einsum('ia,jb,abc->ijc', _dino_resize_oracle(side, h), _dino_resize_oracle(side, w),
                         patches).reshape(h * w, dim)
    if grid == (side, side):                     # DINO keeps the trained embedding as it is
        expected = patches.reshape(h * w, dim)
    assert tuple(out.shape) == (1, 1 + h * w, dim)
    torch.testing.assert_close(out[0, 0], pos[0, 0])                     # the class token as is
    np.testing.assert_allclose(out[0, 1:].numpy(), expected, atol=1e-10)
    if grid != (side, side):                                              # not timm's resampling
        from timm.layers import resample_abs_pos_embed
        timm_pos = resample_abs_pos_embed(pos, new_size=list(grid), num_prefix_tokens=1)
        assert (timm_pos[0, 1:] - out[0, 1:]).abs().max() > 1e-3


def test_dino_last_keys_use_dinos_position_embedding_on_a_non_square_grid():
    """Oracle: a fixed-size timm ViT for exactly this grid whose position embedding is DINO's."""
    import timm
    model = _tiny_vit()
    x = torch.randn(1, 3, 48, 80)                                         # a 3 x 5 grid
    fixed = timm.create_model('vit_base_patch16_224', num_classes=0, pretrained=False, depth=2,
                              embed_dim=48, num_heads=3, img_size=(48, 80)).eval()
    state = dict(model.state_dict())
    side = 14
    patches = state['pos_embed'][0, 1:].reshape(side, side, -1).double().numpy()
    resized = np.einsum('ia,jb,abc->ijc', _dino_resize_oracle(side, 3), _dino_resize_oracle(side, 5),
                        patches).reshape(15, -1)
    state['pos_embed'] = torch.cat([state['pos_embed'][:, :1],
                                    torch.from_numpy(resized).float()[None]], dim=1)
    fixed.load_state_dict(state)
    seen = {}
    fixed.blocks[-1].attn.qkv.register_forward_hook(lambda m, a, out: seen.__setitem__('qkv', out))
    with torch.no_grad():
        fixed.forward_features(x)
    expected = seen['qkv'].reshape(1, 16, 3, 3, 16)[:, 1:, 1].reshape(1, 15, 48)
    torch.testing.assert_close(dino_last_keys(model, x), expected, atol=1e-5, rtol=1e-5)


def _save(obj, path):
    torch.save(obj, path)
    return str(path)


def test_load_dino_state_dict_unwraps_teacher_and_prefixes_and_unpickles_only_on_opt_in(
        tmp_path, monkeypatch):
    sd = {'cls_token': torch.zeros(1, 1, 4), 'blocks.0.attn.qkv.weight': torch.ones(12, 4)}
    nested = {
        'teacher': {'module.backbone.' + k: v + 1 for k, v in sd.items()},
        'student': {'module.backbone.' + k: v + 2 for k, v in sd.items()},
        'args': argparse.Namespace(arch='vit_base'),  # not loadable with weights_only=True
    }
    nested['teacher']['module.head.mlp.0.weight'] = torch.zeros(3)
    full = _save(nested, tmp_path / 'full.pth')
    monkeypatch.delenv('ROBUSTVIT_TRUST_CHECKPOINTS', raising=False)
    with pytest.raises(ValueError, match=r'full\.pth.*ROBUSTVIT_TRUST_CHECKPOINTS=1'):
        load_dino_state_dict(full)  # unpickling the Namespace could run code: refused
    monkeypatch.setenv('ROBUSTVIT_TRUST_CHECKPOINTS', '1')
    out = load_dino_state_dict(full)
    monkeypatch.delenv('ROBUSTVIT_TRUST_CHECKPOINTS')
    assert set(out) == set(sd)
    torch.testing.assert_close(out['cls_token'], sd['cls_token'] + 1)  # the teacher
    out = load_dino_state_dict(_save({'state_dict': {'module.' + k: v for k, v in sd.items()}},
                                      tmp_path / 'ddp.pth'))
    assert set(out) == set(sd)
    with pytest.raises(FileNotFoundError, match='nowhere.pth'):
        load_dino_state_dict(tmp_path / 'nowhere.pth')


def test_build_dino_names_the_file_and_missing_keys_for_a_wrong_checkpoint(tmp_path):
    path = _save({'cls_token': torch.zeros(1, 1, 768)}, tmp_path / 'small.pth')
    msg = r'small\.pth is not a DINO .*missing keys blocks\.0\..* \(149 in all\)'
    with pytest.raises(ValueError, match=msg):
        build_dino_vitb16(path)


# ------------------------------------------------------------------------------- full pipeline
def test_tokencut_mask_falls_back_to_ncut_on_disagreement_or_empty_refinement(monkeypatch):
    model = _tiny_vit()
    img = Image.fromarray(_two_colour_image())
    res = tokencut_mask(model, img)
    assert res.mask.shape == (H, W) and res.ncut_mask.shape == (H, W) and res.mask.dtype == bool
    # An all-background refinement: empty -> NCut mask.
    monkeypatch.setattr(tc, 'bilateral_solve', lambda image, target, *a, **k: np.zeros(target.shape))
    res = tokencut_mask(model, img)
    assert res.fallback == 'empty_refinement'
    np.testing.assert_array_equal(res.mask, res.ncut_mask)
    # A refinement that is the complement of the NCut mask: IoU 0 -> NCut mask, not a -1 mask.
    monkeypatch.setattr(tc, 'bilateral_solve', lambda image, target, *a, **k: 1.0 - target)
    res = tokencut_mask(model, img)
    if res.ncut_mask.all():  # no complement possible; covered by the empty case above
        pytest.skip('NCut mask covers the whole image')
    assert res.fallback == 'low_iou' and res.iou < 0.5
    np.testing.assert_array_equal(res.mask, res.ncut_mask)
    assert set(np.unique(res.mask.astype(int))) <= {0, 1}


def test_mask_png_uses_the_imagenet_s_encoding_and_loads_with_load_foreground_mask(tmp_path):
    from robustvit_mm.datasets.transforms import LoadForegroundMask

    mask = np.zeros((H, W), bool)
    mask[5:20, 10:40] = True
    rgb = encode_imagenet_s_mask(mask)
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
    assert (rgb[mask] == (1, 0, 0)).all() and (rgb[~mask] == 0).all()
    path = str(tmp_path / 'cls' / 'm.png')
    write_mask_png(path, mask)
    assert os.listdir(tmp_path / 'cls') == ['m.png']  # no temporary file left behind
    np.testing.assert_array_equal(_ids(path), mask.astype(np.int32))
    out = LoadForegroundMask().transform(dict(mask_path=path))
    np.testing.assert_array_equal(out['fg_mask'], mask.astype(np.float32))
    assert not out['ignore_mask'].any()
    with pytest.raises(ValueError):
        encode_imagenet_s_mask(mask, fg_id=1000)
    # Integer ids are written as they are (ignore 1000 = G 3, R 232), and decode back.
    ids = np.zeros((H, W), np.int32)
    ids[mask], ids[0, 0] = 919, 1000
    rgb = encode_imagenet_s_mask(ids)
    assert tuple(rgb[0, 0]) == (232, 3, 0) and tuple(rgb[mask][0]) == (151, 3, 0)
    np.testing.assert_array_equal(decode_imagenet_s_mask(rgb, channel_order='rgb'), ids)
    np.testing.assert_array_equal(decode_imagenet_s_mask(rgb[..., ::-1]), ids)  # cv2's BGR
    with pytest.raises(ValueError, match='65535'):
        encode_imagenet_s_mask(np.full((2, 2), 70000))


def test_interrupted_write_leaves_no_mask_and_no_temporary_file(tmp_path, monkeypatch):
    def boom(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(tokencut_batch.os, 'replace', boom)
    with pytest.raises(KeyboardInterrupt):
        write_mask_png(str(tmp_path / 'm.png'), np.ones((4, 4), bool))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


def test_panel_is_rgb_image_then_mask(tmp_path):
    img = np.zeros((8, 6, 3), np.uint8)
    img[..., 0] = 200  # red
    mask = np.zeros((8, 6), bool)
    mask[:, :3] = True
    panel = make_panel(Image.fromarray(img), mask, gap=2)
    assert panel.shape == (8, 14, 3)
    np.testing.assert_array_equal(panel[:, :6], img)
    assert (panel[:, 8:11] == 255).all() and (panel[:, 11:] == 0).all()


def test_list_images_keeps_only_images_and_skips_an_output_root_inside(tmp_path):
    root = str(tmp_path / 'imgs')
    _write_tree(root)
    out = osp.join(root, 'masks')
    write_mask_png(osp.join(out, 'n01443537', 'a.png'), np.ones((4, 4), bool))
    assert list_images(root, exclude=[out]) == [
        osp.join('n01443537', 'a.JPEG'), osp.join('n01443537', 'b.png'),
        osp.join('n01484850', 'c.jpg')]


def test_symlink_loops_and_second_links_are_listed_once(tmp_path):
    """A link back to the root, followed, would repeat the tree until the path length limit (4 images
    gave 164 masks): each real folder is listed once, and the skipped links are named."""
    root, out = str(tmp_path / 'imgs'), str(tmp_path / 'masks')
    _write_tree(root)
    os.symlink(root, osp.join(root, 'n01443537', 'loop'))  # back to the root
    os.symlink(osp.join(root, 'n01484850'), osp.join(root, 'again'))  # a second link to a folder
    with pytest.warns(UserWarning) as caught:
        found = list_images(root)
    assert found == [osp.join('n01443537', 'a.JPEG'), osp.join('n01443537', 'b.png'),
                     osp.join('n01484850', 'c.jpg')]
    messages = ' '.join(str(w.message) for w in caught)
    assert osp.join(root, 'n01443537', 'loop') in messages and osp.join(root, 'again') in messages
    with pytest.warns(UserWarning, match='symbolic link loop'):
        summary = generate_tokencut_masks(root, out, model=_tiny_vit(), progress=False, refine=False)
    assert (summary.images, summary.written) == (3, 3)
    written = sorted(osp.relpath(osp.join(d, f), out) for d, _, fs in os.walk(out) for f in fs)
    assert written == [osp.join('n01443537', 'a.png'), osp.join('n01443537', 'b.png'),
                       osp.join('n01484850', 'c.png')]


def test_exif_rotated_jpeg_is_cut_upright_and_its_mask_written_on_the_stored_pixels(tmp_path):
    """DINO sees the picture as a viewer shows it; the mask file is on the stored pixels (the
    ImageNet-S convention), so LoadForegroundMask turns it with the image either way."""
    from robustvit_mm.datasets import LoadCheckedImage, LoadForegroundMask
    root, out = tmp_path / 'imgs', str(tmp_path / 'masks')
    (root / 'n01443537').mkdir(parents=True)
    stored = np.zeros((H, W, 3), np.uint8)
    stored[:] = (30, 60, 90)
    stored[4:20, 36:60] = (250, 220, 40)          # off-centre, so a turn changes the cut
    img = Image.fromarray(stored)
    exif = img.getexif()
    exif[0x0112] = 6                              # shown rotated 90 degrees clockwise
    path = str(root / 'n01443537' / 'a.JPEG')
    img.save(path, quality=95, exif=exif.tobytes())
    upright, orientation = load_image(path)
    assert orientation == 6 and upright.size == (H, W)     # PIL size is (width, height)
    model = _tiny_vit()
    with torch.no_grad():
        model.pos_embed.mul_(50.0)                # features follow position: the cut sees the turn
    generate_tokencut_masks(str(root), out, model=model, progress=False, refine=False)
    written = _ids(osp.join(out, 'n01443537', 'a.png')) == 1
    assert written.shape == (H, W)
    # Oracle: the cut of the upright picture, turned back (rotate 90 counter-clockwise).
    expected = np.rot90(tokencut_mask(model, upright, refine=False).mask, 1)
    np.testing.assert_array_equal(written, expected)
    on_stored = tokencut_mask(model, Image.open(path).convert('RGB'), refine=False).mask
    assert (on_stored != expected).any()          # the orientation really matters here
    for color_type, shape in (('color_ignore_orientation', (H, W)), ('color', (W, H))):
        results = LoadCheckedImage(color_type=color_type)(dict(img_path=path))
        results = LoadForegroundMask()(dict(results, mask_path=osp.join(out, 'n01443537', 'a.png')))
        assert results['fg_mask'].shape == results['img'].shape[:2] == shape


def test_generate_with_a_model_object_mirrors_the_tree_and_resumes(tmp_path):
    root, out = str(tmp_path / 'imgs'), str(tmp_path / 'masks')
    paths = _write_tree(root)
    model = _tiny_vit()
    summary = generate_tokencut_masks(root, out, model=model, progress=False, max_per_class=1)
    assert (summary.images, summary.written, summary.skipped) == (2, 2, 0)
    assert sorted(os.listdir(osp.join(out, 'n01443537'))) == ['a.png']
    summary = generate_tokencut_masks(root, out, model=model, progress=False)
    assert (summary.images, summary.written, summary.skipped) == (3, 1, 2)
    for key, img_path in paths.items():
        ids = _ids(osp.join(out, key + '.png'))
        assert ids.shape == np.asarray(Image.open(img_path)).shape[:2]
        assert set(np.unique(ids)) <= {0, 1}


# ---------------------------------------------------------------------------------- the CLI
TOOL = osp.join(REPO, 'tools', 'tokencut_masks.py')


def _cli(*args):
    """Run tools/tokencut_masks.py as a user would; returns (exit status, stdout, stderr)."""
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, TOOL, *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=600)
    return proc.returncode, proc.stdout, proc.stderr


def test_cli_help_documents_the_exit_status():
    rc, out, _ = _cli('--help')
    assert rc == 0
    assert 'exit status' in out and '--save-panels' in out and '--weights' in out


def test_cli_reports_a_bad_weights_file(tmp_path):
    root = str(tmp_path / 'imgs')
    _write_tree(root)
    bad = _save({'cls_token': torch.zeros(1, 1, 768)}, tmp_path / 'bad.pth')
    rc, _, err = _cli(root, tmp_path / 'out', '--weights', bad)
    assert rc == 2 and 'bad.pth is not a DINO' in err
    rc, _, err = _cli(root, root, '--weights', bad)
    assert rc == 2 and 'OUT_ROOT must differ from IMG_ROOT' in err
    with pytest.raises(ValueError, match='must differ'):
        generate_tokencut_masks(root, root + '/', model=object())


@pytest.fixture(scope='module')
def dino_vitb16_file(tmp_path_factory):
    """A randomly initialised DINO ViT-B/16 saved like the official dino_vitbase16_pretrain.pth."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model('vit_base_patch16_224', num_classes=0, pretrained=False)
    path = tmp_path_factory.mktemp('dino') / 'dino_vitbase16_pretrain.pth'
    torch.save(model.state_dict(), path)
    return str(path)


@pytest.mark.slow
def test_cli_end_to_end_with_a_dino_vitb16_file(tmp_path, dino_vitb16_file):
    from robustvit_mm.datasets import ImageNetSMaskDataset

    root, out, panels = str(tmp_path / 'imgs'), str(tmp_path / 'masks'), str(tmp_path / 'panels')
    paths = _write_tree(root)
    broken = osp.join(root, 'n01484850', 'broken.JPEG')
    with open(broken, 'wb') as f:
        f.write(b'\xff\xd8 this is not a JPEG')

    rc, text, err = _cli(root, out, '--weights', dino_vitb16_file, '--save-panels', panels)
    assert rc == 1  # one image failed
    assert 'broken.JPEG' in err  # the warning names it
    assert 'images: 4, masks written: 3' in text and 'failures: 1' in text and broken in text
    assert 'images/s' in text
    # The tree is kept, every good image has its mask, nothing else is there.
    found = sorted(osp.relpath(osp.join(d, f), out) for d, _, fs in os.walk(out) for f in fs)
    assert found == sorted(k + '.png' for k in paths)
    for key, img_path in paths.items():
        ids = _ids(osp.join(out, key + '.png'))
        assert ids.shape == np.asarray(Image.open(img_path)).shape[:2]
        assert set(np.unique(ids)) <= {0, 1} and ids.any()
    # Panels: the image in its true colours, then the mask.
    img = np.asarray(Image.open(paths['n01443537/b']))
    panel = cv2.imread(osp.join(panels, 'n01443537', 'b.png'))[..., ::-1]
    np.testing.assert_array_equal(panel[:, :img.shape[1]], img)
    np.testing.assert_array_equal(panel[:, -img.shape[1]:, 0] > 0,
                                  _ids(osp.join(out, 'n01443537', 'b.png')) == 1)
    # The masks are what ImageNetSMaskDataset reads, paired with their images.
    ds = ImageNetSMaskDataset(data_root=str(tmp_path), data_prefix=dict(img_path='imgs',
                              mask_path='masks'), split='all', labels='sorted_folders')
    assert sorted(osp.relpath(d['img_path'], root) for d in ds) == sorted(
        osp.relpath(p, root) for p in paths.values())

    # Re-run: every mask is skipped (the broken image is retried and fails again).
    mtimes = {f: os.stat(osp.join(out, f)).st_mtime_ns for f in found}
    rc, text, _ = _cli(root, out, '--weights', dino_vitb16_file, '--no-progress')
    assert rc == 1 and 'masks written: 0, skipped (already there): 3' in text
    assert mtimes == {f: os.stat(osp.join(out, f)).st_mtime_ns for f in found}

    # Without the broken image, a re-run has nothing to do and does not even load the model: an
    # unusable weights file (exit status 2 once the model is built) goes unnoticed.
    os.remove(broken)
    unusable = _save({'cls_token': torch.zeros(1, 1, 768)}, tmp_path / 'unusable.pth')
    rc, text, _ = _cli(root, out, '--weights', unusable)
    assert rc == 0 and 'masks written: 0, skipped (already there): 3' in text


def test_tokencut_config_has_the_reference_tokencut_defaults(repo_root):
    from mmengine.config import Config

    # A base config that does not load fails this test (it is what the variant builds on).
    cfg = Config.fromfile(osp.join(repo_root, 'configs', 'robustvit',
                                   'vit-base-p16_robustvit-tokencut-released_imagenet.py'))
    loss = cfg.model.relevance_loss
    assert (loss.loss_weight, loss.background_weight, loss.foreground_weight) == (0.1, 1.0, 0.3)
    assert cfg.model.head.loss_weight == 1.0
    assert cfg.train_dataloader.batch_size == 10 and cfg.train_cfg.max_epochs == 150
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        assert loader.dataset.type == 'ImageNetSMaskDataset'
        assert dict(loader.dataset.data_prefix) == dict(img_path='train', mask_path='tokencut_masks')


# ----------------------------------------------------------------------------------- faults
FAULT_RUN = '''
import os, resource, signal, sys
import torch, timm
sys.path.insert(0, {tests!r})
from robustvit_mm.masks import generate_tokencut_masks, tokencut_batch

mode, root, out, panels = sys.argv[1:5]
if mode == 'kill':            # kill -9 half-way through writing the second file
    writes, real = [0], tokencut_batch.atomic_write_bytes

    def dying(path, data):
        writes[0] += 1
        if writes[0] == 2:
            from robustvit_mm.utils import atomic_open
            with atomic_open(path, 'wb') as f:
                f.write(data[:len(data) // 2])
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        return real(path, data)

    tokencut_batch.atomic_write_bytes = dying
elif mode == 'fsize':         # files above 600 bytes fail part-way (EFBIG): the panels here
    resource.setrlimit(resource.RLIMIT_FSIZE, (600, 600))
torch.manual_seed(0)
model = timm.create_model('vit_base_patch16_224', num_classes=0, dynamic_img_size=True,
                          pretrained=False, depth=2, embed_dim=48, num_heads=3).eval()
summary = generate_tokencut_masks(root, out, model=model, panels_dir=panels, progress=False)
print(summary.line())
sys.exit(1 if summary.failures else 0)
'''


def _files(folder):
    return sorted(osp.relpath(osp.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


@pytest.mark.slow
@pytest.mark.parametrize('fault', ['kill', 'fsize'])
def test_an_interrupted_or_failed_write_leaves_nothing_finished_looking_and_the_rerun_completes(
        tmp_path, fault):
    root = str(tmp_path / 'imgs')
    _write_tree(root)
    script = tmp_path / 'run.py'
    script.write_text(FAULT_RUN.format(tests=osp.dirname(__file__)))

    def run(mode, name):
        out, panels = str(tmp_path / name / 'masks'), str(tmp_path / name / 'panels')
        proc = subprocess.run([sys.executable, str(script), mode, root, out, panels],
                              capture_output=True, text=True, timeout=300,
                              env=dict(os.environ, OMP_NUM_THREADS='1'))
        return proc, out, panels

    clean, clean_out, clean_panels = run('none', 'clean')
    assert clean.returncode == 0, clean.stderr[-3000:]
    broken, out, panels = run(fault, 'broken')
    if fault == 'kill':
        assert broken.returncode == -9, broken.stderr[-3000:]
    else:
        assert broken.returncode == 1 and 'failures: 3' in broken.stdout, broken.stdout
        assert 'File too large' in broken.stdout
    # Whatever is on disk under a final name is complete; the rest are hidden temporaries.
    for folder in (out, panels):
        for rel in _files(folder) if osp.isdir(folder) else []:
            if osp.basename(rel).startswith('.'):
                assert rel.endswith('.tmp') and fault == 'kill', rel
                continue
            assert cv2.imread(osp.join(folder, rel)) is not None, rel
    masks_done = [r for r in (_files(out) if osp.isdir(out) else [])
                  if not osp.basename(r).startswith('.')]
    assert len(masks_done) < 3                                    # the run did not finish
    rerun, _, _ = run('none', 'broken')
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f'skipped (already there): {len(masks_done)}' in rerun.stdout, rerun.stdout
    for clean_dir, dirty_dir in ((clean_out, out), (clean_panels, panels)):
        finished = [r for r in _files(dirty_dir) if not osp.basename(r).startswith('.')]
        assert finished == _files(clean_dir)
        for rel in finished:                                      # the same result, pixel for pixel
            np.testing.assert_array_equal(cv2.imread(osp.join(clean_dir, rel)),
                                          cv2.imread(osp.join(dirty_dir, rel)))
