"""TokenCut foreground masks (Wang et al., CVPR 2022) from self-supervised DINO ViT-B/16 features:
the per-image algorithm. The folder job (reading images, writing masks, resuming) is
:mod:`robustvit_mm.masks.tokencut_batch`.

RobustViT's annotation-free variant fine-tunes on these masks. The authors' released generator calls
an unpublished TokenCut variant (docs/faithfulness.md#tokencut); this module is a working
re-implementation of the original TokenCut method:

1. DINO ViT-B/16 (timm, weights from a local file). The image is resized with LANCZOS so that each
   side is the nearest multiple of 16, normalised with the ImageNet mean/std; the position embeddings
   are resized to the patch grid as DINO does (:func:`dino_position_embedding`).
2. Features = keys of the last block's self-attention, heads concatenated (768-d), CLS dropped.
3. Normalised cut: cosine affinity binarised at ``tau`` (else ``eps``), generalised eigenproblem
   ``(D - A) v = lambda D v``, second-smallest eigenvector, split at its mean; the foreground is the side
   holding the patch with the largest ``|v|`` (the seed); only the 4-connected component containing the
   seed is kept; nearest upsampling to the image size.
4. Fast bilateral solver refinement (sigma spatial 16, luma 16, chroma 8, lambda 256, confidence 0.999,
   <= 25 CG iterations), threshold 0.5, hole filling, largest foreground blob.
5. If the refinement disagrees with the NCut mask (IoU < 0.5) or comes out empty, the NCut mask is
   kept and the case is counted. (The released code stored such masks as 0/-1 arrays which its
   dataset then silently dropped.)
"""
import math
import os.path as osp
import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage
from scipy.linalg import eigh

from ..compat.checkpoint_loading import load_checkpoint_file
from ..datasets.formats import IMAGENET_NORM
from .bilateral_solver import bilateral_solve

__all__ = [
    'load_dino_state_dict', 'build_dino_vitb16', 'preprocess_image', 'dino_position_embedding',
    'dino_last_keys', 'ncut_affinity', 'second_smallest_eigenvector', 'bipartition_with_seed',
    'seed_component', 'ncut', 'NCutResult', 'upsample_nearest', 'postprocess_refined', 'mask_iou',
    'TokenCutResult', 'tokencut_mask',
]

PATCH_SIZE = 16
DINO_ARCH = 'vit_base_patch16_224'

# Where DINO / mmpretrain / other tools nest the state dict.
_WRAPPER_KEYS = ('teacher', 'student', 'model', 'state_dict')


# ----------------------------------------------------------------------------------------------
# DINO backbone
# ----------------------------------------------------------------------------------------------
def load_dino_state_dict(path):
    """Read a DINO ViT checkpoint file into a plain timm-style state dict.

    The official ``dino_vitbase16_pretrain.pth`` is a bare state dict with timm key names; full DINO
    checkpoints nest it under 'teacher' (preferred) or 'student', other tools under 'model' or
    'state_dict', with 'module.' (DDP) or 'backbone.' prefixes. All of that is unwrapped; projection
    head keys ('head.*') are dropped. The file is loaded safely (``robustvit_mm.compat``): one that
    pickles other objects (a full DINO checkpoint holds its argparse options) needs
    ``ROBUSTVIT_TRUST_CHECKPOINTS=1``, as the error says.
    """
    path = osp.expanduser(str(path))
    if not osp.isfile(path):
        raise FileNotFoundError(f'DINO weights file not found: {path}')
    try:
        # Safe loading (tensors, containers, numpy); a full DINO training checkpoint also pickles
        # its argparse options, which needs the explicit opt-in the error names.
        ckpt = load_checkpoint_file(path, map_location='cpu')
    except Exception as exc:  # noqa: BLE001 - not a torch file, or refused by safe loading
        raise ValueError(f'cannot read DINO weights file {path}: {exc}') from exc
    changed = True
    while changed and isinstance(ckpt, dict):
        changed = False
        for key in _WRAPPER_KEYS:
            if isinstance(ckpt.get(key), dict):
                ckpt, changed = ckpt[key], True
                break
    if not isinstance(ckpt, dict) or not any(torch.is_tensor(v) for v in ckpt.values()):
        raise ValueError(f'{path} does not contain a state dict')
    state = {k: v for k, v in ckpt.items() if torch.is_tensor(v)}
    # Full DINO checkpoints hold 'backbone.*' and the projection 'head.*': keep the backbone only.
    has_backbone = any(k.removeprefix('module.').startswith('backbone.') for k in state)
    out = {}
    for key, value in state.items():
        key = key.removeprefix('module.')
        if has_backbone:
            if not key.startswith('backbone.'):
                continue
            key = key.removeprefix('backbone.').removeprefix('module.')
        out[key] = value
    return {k: v for k, v in out.items() if not k.startswith('head.')}


def build_dino_vitb16(weights, device='cpu', arch=DINO_ARCH):
    """Build timm's ViT-B/16 (dynamic image size, no head) and load DINO weights from a local file.

    Raises:
        ValueError: naming the file and the missing keys (or the shape mismatch) when the file is not
            a ViT-B/16 checkpoint.
    """
    import timm  # heavy import, only needed here

    state = load_dino_state_dict(weights)
    # Built on the meta device: no random initialisation, the checkpoint tensors become the weights.
    with torch.device('meta'):
        model = timm.create_model(arch, num_classes=0, dynamic_img_size=True, pretrained=False)
    expected = model.state_dict()
    missing = sorted(k for k in expected if k not in state)
    if missing:
        shown = ', '.join(missing[:10]) + (f' ... ({len(missing)} in all)' if len(missing) > 10 else '')
        raise ValueError(f'{weights} is not a DINO {arch} checkpoint: missing keys {shown}')
    mismatched = [f'{k} {tuple(state[k].shape)} != {tuple(v.shape)}' for k, v in expected.items()
                  if tuple(state[k].shape) != tuple(v.shape)]
    if mismatched:
        raise ValueError(f'{weights} is not a DINO {arch} checkpoint: shape mismatch '
                         + '; '.join(mismatched[:5]))
    unexpected = sorted(k for k in state if k not in expected)
    if unexpected:
        warnings.warn(f'{weights}: ignoring {len(unexpected)} unexpected keys ({unexpected[:5]})')
    weights_only = {k: state[k].to(dtype=v.dtype) for k, v in expected.items()}
    model.load_state_dict(weights_only, strict=True, assign=True)
    if any(t.is_meta for t in list(model.parameters()) + list(model.buffers())):
        # Some tensor is not in the state dict (e.g. a non-persistent buffer): build it for real.
        model = timm.create_model(arch, num_classes=0, dynamic_img_size=True, pretrained=False)
        model.load_state_dict(weights_only, strict=True)
    return model.to(device).eval()



def preprocess_image(img, patch_size=PATCH_SIZE):
    """LANCZOS-resize so each side is the nearest multiple of ``patch_size``, then ImageNet-normalise.

    Returns:
        ``(tensor (1, 3, H', W'), (feat_h, feat_w))``.
    """
    w, h = img.size
    feat_w = max(1, int(round(w / patch_size)))
    feat_h = max(1, int(round(h / patch_size)))
    resized = img.resize((feat_w * patch_size, feat_h * patch_size), resample=Image.LANCZOS)
    arr = np.asarray(resized, dtype=np.float32)  # RGB, 0-255
    arr = (arr - np.asarray(IMAGENET_NORM['mean'], np.float32)) / np.asarray(IMAGENET_NORM['std'],
                                                                             np.float32)
    tensor = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))[None]
    return tensor, (feat_h, feat_w)



def dino_position_embedding(pos_embed, grid_hw):
    """DINO's position embedding for a ``grid_hw`` = (h, w) patch grid (one class token first).

    As DINO's ``interpolate_pos_encoding``: unchanged for the square grid it was trained on, else
    the patch part is resized bicubically with the scale factor ``(h + 0.1) / sqrt(N)`` (and
    ``(w + 0.1) / sqrt(N)``), N the trained number of patches. The scale factor, not the output
    size, sets where each output samples the input, so this differs from timm's resampling
    (features about 0.02 apart on a ViT-B/16), and TokenCut's features are DINO's.
    """
    h, w = grid_hw
    num_patches = pos_embed.shape[1] - 1
    if h * w == num_patches and h == w:
        return pos_embed
    side = int(math.sqrt(num_patches))
    dim = pos_embed.shape[-1]
    patch = pos_embed[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)
    patch = F.interpolate(patch, scale_factor=((h + 0.1) / side, (w + 0.1) / side), mode='bicubic')
    if tuple(patch.shape[-2:]) != (h, w):
        raise RuntimeError(f'position embedding resized to {tuple(patch.shape[-2:])}, not {(h, w)}')
    patch = patch.permute(0, 2, 3, 1).reshape(1, h * w, dim)
    return torch.cat([pos_embed[:, :1], patch], dim=1)


@torch.no_grad()
def dino_last_keys(model, inputs):
    """Keys of the last block's attention, heads concatenated, prefix tokens dropped.

    The tokens get DINO's position embedding (:func:`dino_position_embedding`), not timm's.

    Args:
        model: a timm ``VisionTransformer`` with one class token (DINO ViT-B/16).
        inputs: (B, 3, H, W) normalised images, H and W multiples of the patch size.

    Returns:
        (B, N_patches, num_heads * head_dim) tensor.
    """
    attn = model.blocks[-1].attn
    store = {}
    handle = attn.qkv.register_forward_hook(lambda mod, args, out: store.__setitem__('qkv', out))
    try:
        patch = model.patch_embed.patch_size[0]
        grid = (inputs.shape[-2] // patch, inputs.shape[-1] // patch)
        x = model.patch_embed.proj(inputs).flatten(2).transpose(1, 2)  # (B, h*w, C), row-major
        x = model.patch_embed.norm(x)
        x = torch.cat([model.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = model.pos_drop(x + dino_position_embedding(model.pos_embed, grid))
        x = model.norm_pre(x)
        for block in model.blocks:
            x = block(x)
    finally:
        handle.remove()
    qkv = store['qkv']
    b, n, _ = qkv.shape
    k = qkv.reshape(b, n, 3, attn.num_heads, -1)[:, :, 1]  # (B, N, heads, head_dim)
    k = k.reshape(b, n, -1)
    return k[:, model.num_prefix_tokens:]


# ----------------------------------------------------------------------------------------------
# Normalised cut
# ----------------------------------------------------------------------------------------------
def ncut_affinity(feats, tau=0.2, eps=1e-5):
    """(N, C) features -> (N, N) float64 graph: 1 where cosine similarity > tau, else eps."""
    feats = np.asarray(feats, dtype=np.float64)
    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    feats = feats / np.maximum(norms, 1e-12)
    sim = feats @ feats.T
    return np.where(sim > tau, 1.0, eps)


def second_smallest_eigenvector(A):
    """Eigenvector of the second-smallest eigenvalue of ``(D - A) v = lambda D v``."""
    n = A.shape[0]
    if n < 3:
        raise ValueError(f'normalised cut needs at least 3 patches, got {n} (image too small)')
    D = np.diag(A.sum(axis=1))
    _, vecs = eigh(D - A, D, subset_by_index=[1, 2])
    return vecs[:, 0].copy()


def bipartition_with_seed(v):
    """Split ``v`` at its mean; the foreground is the side holding the seed ``argmax |v|``.

    Returns:
        ``(foreground (N,) bool, seed index, v oriented so that the foreground is v > mean)``.
    """
    v = np.asarray(v, dtype=np.float64)
    partition = v > v.mean()
    seed = int(np.argmax(np.abs(v)))
    if not partition[seed]:
        partition = ~partition
        v = -v
    return partition, seed, v


def seed_component(mask, seed):
    """Keep only the 4-connected component of ``mask`` (h, w) that contains the flat index ``seed``."""
    mask = np.asarray(mask, dtype=bool)
    labels, _ = ndimage.label(mask)
    seed_label = labels.flat[seed]
    if seed_label == 0:
        return np.zeros_like(mask)
    return labels == seed_label


@dataclass
class NCutResult:
    mask: np.ndarray         # (feat_h, feat_w) bool, the principal object
    partition: np.ndarray    # (feat_h, feat_w) bool, the whole foreground side of the cut
    seed: int                # flat index of the seed patch
    eigenvector: np.ndarray  # (feat_h, feat_w), oriented so that the foreground is above its mean


def ncut(feats, grid_hw, tau=0.2, eps=1e-5):
    """TokenCut's normalised cut on (N, C) patch features laid out on a ``grid_hw`` = (h, w) grid."""
    h, w = grid_hw
    feats = np.asarray(feats)
    if feats.shape[0] != h * w:
        raise ValueError(f'{feats.shape[0]} features do not fill a {h}x{w} grid')
    v = second_smallest_eigenvector(ncut_affinity(feats, tau, eps))
    partition, seed, v = bipartition_with_seed(v)
    partition = partition.reshape(h, w)
    return NCutResult(seed_component(partition, seed), partition, seed, v.reshape(h, w))


def upsample_nearest(mask, size):
    """Nearest-neighbour upsampling of an (h, w) mask to ``size`` = (H, W) (torch's 'nearest')."""
    t = torch.from_numpy(np.asarray(mask, dtype=np.float32))[None, None]
    return F.interpolate(t, size=tuple(size), mode='nearest')[0, 0].numpy() > 0.5


# ----------------------------------------------------------------------------------------------
# Refinement and the full per-image pipeline
# ----------------------------------------------------------------------------------------------
def postprocess_refined(soft, threshold=0.5):
    """Threshold the solver output, fill holes, keep the largest 4-connected foreground blob.

    (The authors' code kept the label ranked second-largest among all labels including the background,
    which is not always a foreground blob.) Returns an all-False mask when nothing passes.
    """
    binary = ndimage.binary_fill_holes(np.asarray(soft) > threshold)
    labels, num = ndimage.label(binary)
    if num == 0:
        return np.zeros(binary.shape, dtype=bool)
    sizes = np.bincount(labels.ravel(), minlength=num + 1)
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def mask_iou(a, b):
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    union = np.logical_or(a, b).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum() / union)


@dataclass
class TokenCutResult:
    mask: np.ndarray                 # (H, W) bool, the final mask (refined, or NCut on fallback)
    ncut_mask: np.ndarray            # (H, W) bool, the upsampled NCut mask
    refined_mask: np.ndarray         # (H, W) bool, the bilateral-solver mask (possibly empty)
    iou: float                       # IoU(NCut mask, refined mask)
    fallback: Optional[str] = None   # None, 'low_iou' or 'empty_refinement'


def tokencut_mask(model, img, device='cpu', *, tau=0.2, eps=1e-5, refine=True, iou_threshold=0.5,
                  sigma_spatial=16, sigma_luma=16, sigma_chroma=8, lam=256.0, confidence=0.999,
                  cg_maxiter=25):
    """Foreground mask of one RGB PIL image at its own resolution (TokenCut + bilateral solver)."""
    w, h = img.size
    inputs, grid = preprocess_image(img)
    feats = dino_last_keys(model, inputs.to(device))[0].float().cpu().numpy()
    if feats.shape[0] != grid[0] * grid[1]:
        raise RuntimeError(f'model returned {feats.shape[0]} patch tokens for a {grid[0]}x{grid[1]} grid')
    coarse = ncut(feats, grid, tau=tau, eps=eps)
    ncut_mask = upsample_nearest(coarse.mask, (h, w))
    if not refine:
        return TokenCutResult(ncut_mask, ncut_mask, ncut_mask, 1.0, None)
    soft = bilateral_solve(np.asarray(img), ncut_mask.astype(np.float64), confidence,
                           sigma_spatial=sigma_spatial, sigma_luma=sigma_luma,
                           sigma_chroma=sigma_chroma, lam=lam, cg_maxiter=cg_maxiter)
    refined = postprocess_refined(soft)
    iou = mask_iou(ncut_mask, refined)
    if not refined.any():
        return TokenCutResult(ncut_mask, ncut_mask, refined, iou, 'empty_refinement')
    if iou < iou_threshold:
        return TokenCutResult(ncut_mask, ncut_mask, refined, iou, 'low_iou')
    return TokenCutResult(refined, ncut_mask, refined, iou, None)
