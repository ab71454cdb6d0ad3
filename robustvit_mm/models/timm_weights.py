"""Convert timm checkpoints of class-token ViTs into what the configs' ``load_from`` accepts.

Target 'mmpretrain': an ``ImageClassifier`` with a ViT-head (``head.layers.head``). The family is
read from the checkpoint's names; one rename table per family maps timm's names onto the mmpretrain
backbone that computes the same function (logit for logit:
tests/test_models/test_weight_conversion.py):

====================================  ==========================  =================================
timm model (state dict)               mmpretrain backbone         notes
====================================  ==========================  =================================
``VisionTransformer``: ViT, DeiT      ``VisionTransformer``
DINOv2 (``ls1/ls2.gamma``)            ``VisionTransformer``       layer scale -> ``attn.gamma1``,
                                      (``layer_scale_init_value`` ``ffn.gamma2``
                                      ``> 0``)
DeiT3 (``ls1/ls2.gamma``, no class    as DINOv2                   a zero class position is added
position in ``pos_embed``)                                        to ``pos_embed`` (cls + 0 = cls)
``Beit`` (BEiT, BEiT-v2)              ``BEiTViT``                 index buffers generated
``Eva`` (EVA-02)                      ``ViTEVA02``                q/k/v and SwiGLU fc1 merged;
                                                                  EVA-02's RoPE tables written
====================================  ==========================  =================================

mmpretrain 1.2.0's own ``DeiT3`` backbone is not a target: its blocks normalise the MLP input with
``ln1`` (``ln2`` is never used), so it does not compute DeiT3's function.

Target 'timm': a ``TimmClassifier`` config (timm's own names, unchanged; ``TimmClassifier`` adds its
``model.`` prefix itself).
"""
import math
import os.path as osp
import re

import torch

from ..utils.fileio import atomic_open

_NESTING_KEYS = ('state_dict', 'model', 'module')
# Masked-image-modelling token of self-supervised checkpoints (DINOv2, BEiT, EVA): no classifier
# forward reads it.
_UNUSED = ('mask_token',)

_COMMON = [
    (r'^cls_token$', 'backbone.cls_token'),
    (r'^pos_embed$', 'backbone.pos_embed'),
    (r'^patch_embed\.proj\.', 'backbone.patch_embed.projection.'),
    (r'^head\.', 'head.layers.head.'),
]
_B = r'^blocks\.(\d+)\.'  # timm block prefix; \1 is the block index
_L = r'backbone.layers.\1.'
# timm name (regex) -> mmpretrain name, per family.
_RENAMES = {
    'vit': _COMMON + [  # ViT, DeiT, DeiT3, DINOv2
        (_B + r'norm1\.', _L + 'ln1.'),
        (_B + r'attn\.(qkv|proj)\.', _L + r'attn.\2.'),
        (_B + r'ls1\.gamma$', _L + 'attn.gamma1.weight'),
        (_B + r'norm2\.', _L + 'ln2.'),
        (_B + r'mlp\.fc1\.', _L + 'ffn.layers.0.0.'),
        (_B + r'mlp\.fc2\.', _L + 'ffn.layers.1.'),
        (_B + r'ls2\.gamma$', _L + 'ffn.gamma2.weight'),
        (r'^norm\.', 'backbone.ln1.'),      # class-token pooling (final_norm)
    ],
    'beit': _COMMON + [
        (_B + r'norm1\.', _L + 'ln1.'),
        (_B + r'attn\.(qkv\.weight|q_bias|v_bias|relative_position_bias_table|proj\.)',
         _L + r'attn.\2'),
        (_B + r'(gamma_1|gamma_2)$', _L + r'\2'),
        (_B + r'norm2\.', _L + 'ln2.'),
        (_B + r'mlp\.fc1\.', _L + 'ffn.layers.0.0.'),
        (_B + r'mlp\.fc2\.', _L + 'ffn.layers.1.'),
        (r'^rel_pos_bias\.relative_position_bias_table$',
         'backbone.rel_pos_bias.relative_position_bias_table'),
        (r'^norm\.', 'backbone.ln1.'),      # class-token pooling: final_norm=True
        (r'^fc_norm\.', 'backbone.ln2.'),   # average pooling: out_type='avg_featmap'
    ],
    'eva02': _COMMON + [
        (_B + r'(norm1|norm2)\.', _L + r'\2.'),
        (_B + r'attn\.proj\.', _L + 'attn.proj.'),
        (_B + r'mlp\.norm\.', _L + 'mlp.norm.'),
        (_B + r'mlp\.fc2\.', _L + 'mlp.w3.'),
        (r'^norm\.', 'backbone.ln1.'),
        (r'^fc_norm\.', 'backbone.ln2.'),
    ],
}
# EVA-02: mmpretrain fuses what timm keeps apart (parts concatenated on dim 0; None = zeros: EVA-02
# has no key bias, and a key bias does not change the softmax).
_EVA02_MERGES = [
    ('attn.qkv.weight', ('attn.q_proj.weight', 'attn.k_proj.weight', 'attn.v_proj.weight')),
    ('attn.qkv.bias', ('attn.q_proj.bias', None, 'attn.v_proj.bias')),
    ('mlp.w12.weight', ('mlp.fc1_g.weight', 'mlp.fc1_x.weight')),  # SwiGLU: silu(w1 x) * (w2 x)
    ('mlp.w12.bias', ('mlp.fc1_g.bias', 'mlp.fc1_x.bias')),
]


def load_timm_state_dict(path):
    """Read a timm checkpoint (.pth/.bin, or .safetensors), unnesting 'model'/'state_dict'."""
    if str(path).endswith('.safetensors'):
        from safetensors.torch import load_file
        state = load_file(path)
    else:
        state = torch.load(path, map_location='cpu', weights_only=True)
    while isinstance(state, dict) and any(k in state for k in _NESTING_KEYS) \
            and not any(torch.is_tensor(v) for v in state.values()):
        state = next(state[k] for k in _NESTING_KEYS if k in state)
    if not isinstance(state, dict) or not state:
        raise ValueError(f'{path}: no state dict found')
    return {re.sub(r'^module\.', '', k): v for k, v in state.items()}


# A timm ViT (VisionTransformer, Beit, Eva) has a patch projection and attention blocks.
_TIMM_VIT_MARKERS = (re.compile(r'^patch_embed\.proj\.weight$'), re.compile(_B + r'attn\.'))
# Names of this package's own outputs and of mmpretrain checkpoints (ImageClassifier /
# TimmClassifier): the file has been converted (or trained) already.
_CONVERTED = re.compile(r'^(backbone|head|neck|model)\.')


def check_timm_vit(state, path):
    """Refuse, naming the cause, a file that is not a timm ViT checkpoint: weights converted
    already (mmpretrain names) or another architecture (e.g. a ResNet)."""
    names = list(state)
    shown = ', '.join(names[:4]) + (', ...' if len(names) > 4 else '')
    if sum(bool(_CONVERTED.match(k)) for k in names) > len(names) // 2:
        raise ValueError(
            f'{path}: the tensors have mmpretrain names ({shown}): the file is converted (or '
            'trained with this package) already. Use it as the config\'s load_from as it is; to '
            'convert again, start from the original timm file.')
    if not all(any(marker.match(k) for k in names) for marker in _TIMM_VIT_MARKERS):
        raise ValueError(
            f'{path}: not a timm Vision Transformer checkpoint (no patch_embed.proj.weight and '
            f'blocks.N.attn tensors; it holds {shown}). The converter and the relevance engine '
            'take ViT-family checkpoints only (ViT, DeiT, DeiT3, DINOv2, BEiT, EVA-02, or other '
            'timm VisionTransformer / Beit / Eva models with --target timm).')


def detect_family(state):
    """'eva02', 'beit' or 'vit' (timm VisionTransformer: ViT, DeiT, DeiT3, DINOv2), from names."""
    if any(re.match(_B + r'attn\.q_proj\.', k) for k in state):
        return 'eva02'
    if any(re.match(_B + r'(gamma_1$|attn\.relative_position_bias_table$)', k) for k in state):
        return 'beit'
    return 'vit'


def _extra_tokens(pos_embed):
    """Tokens of ``pos_embed`` that are not patches: 0 for DeiT3 (no class position), else 1."""
    n = pos_embed.shape[1]
    for extra in (0, 1):
        if math.isqrt(n - extra) ** 2 == n - extra:
            return extra
    raise ValueError(f'pos_embed has {n} tokens: not a square patch grid (with or without a class '
                     'position); other token layouts are not converted (use --target timm)')


def _resize_pos_embed(state, img_size):
    """Resample ``pos_embed`` to ``img_size`` as timm does when it loads a checkpoint into a model
    of another size (``resample_abs_pos_embed``: bicubic, antialiased when shrinking), so the
    converted model equals timm's own model of that size from the same weights. Square grids."""
    from timm.layers import resample_abs_pos_embed
    pos = state['pos_embed']
    extra = _extra_tokens(pos)
    src = math.isqrt(pos.shape[1] - extra)
    patch = state['patch_embed.proj.weight'].shape[-1]
    if img_size % patch:
        raise ValueError(f'img_size={img_size} is not a multiple of the patch size {patch}')
    dst = img_size // patch
    if src != dst:
        state['pos_embed'] = resample_abs_pos_embed(pos, new_size=[dst, dst], old_size=[src, src],
                                                    num_prefix_tokens=extra,
                                                    interpolation='bicubic', antialias=True)


def _eva02_rope_tables(state, num_heads, rope_ref_grid):
    """EVA-02's RoPE sin/cos tables for the checkpoint's grid, as timm computes them.

    mmpretrain's ``ViTEVA02`` keeps its RoPE tables as buffers but computes them with another
    formula (frequencies tiled, not interleaved; positions scaled to the head size instead of
    EVA-02's pretraining grid): loading EVA-02's own tables is what makes the two models agree.
    An input size other than the config's ``img_size`` makes mmpretrain recompute its own tables.
    """
    from timm.layers import create_rope_embed
    dims = state['cls_token'].shape[-1]
    grid = math.isqrt(state['pos_embed'].shape[1] - 1)
    rope = create_rope_embed('cat', dim=dims, num_heads=num_heads, feat_shape=[grid, grid],
                             in_pixels=False, ref_feat_shape=(rope_ref_grid, rope_ref_grid))
    sin, cos = rope.get_embed().float().chunk(2, -1)
    return cos.contiguous(), sin.contiguous()


def _merge_eva02(state):
    """Concatenate EVA-02's separate q/k/v and SwiGLU fc1 tensors, as ``ViTEVA02`` holds them."""
    state, merged = dict(state), {}
    blocks = sorted({int(m.group(1)) for k in state for m in [re.match(_B, k)] if m})
    for i in blocks:
        for target, parts in _EVA02_MERGES:
            names = [f'blocks.{i}.{p}' if p else None for p in parts]
            if not any(n in state for n in names if n):
                continue
            present = next(state[n] for n in names if n and n in state)
            missing = [n for n in names if n and n not in state]
            if missing:
                raise ValueError(f'EVA-02 block {i}: {missing} missing to build {target}')
            merged[f'backbone.layers.{i}.{target}'] = torch.cat(
                [state.pop(n) if n else torch.zeros_like(present) for n in names])
    return state, merged


def timm_to_mmpretrain(state, img_size=None, num_heads=None, rope_ref_grid=16):
    """Rename a timm state dict to mmpretrain ``ImageClassifier`` names; returns (family, state).

    Args:
        img_size: resize ``pos_embed`` to this input size (the config's ``img_size``); None keeps
            the checkpoint's.
        num_heads: EVA-02 only (its RoPE tables depend on the head size); default ``dims // 64``,
            the head size of every EVA-02 model.
        rope_ref_grid: EVA-02 only: its pretraining patch grid (224 / 14 = 16 for every EVA-02).
    """
    family = detect_family(state)
    state = {k: v for k, v in state.items() if k not in _UNUSED}
    if img_size is not None and 'pos_embed' in state:
        _resize_pos_embed(state, img_size)
    if img_size is not None and family == 'beit':
        table = next(v for k, v in state.items() if k.endswith('relative_position_bias_table'))
        patch = state['patch_embed.proj.weight'].shape[-1]
        native = (math.isqrt(table.shape[0] - 3) + 1) // 2 * patch  # (2 grid - 1)^2 + 3 rows
        if native != img_size:
            raise ValueError(f'BEiT checkpoints convert at their own input size ({native} px), '
                             f'not img_size={img_size}: use that size in the config.')
    if 'pos_embed' in state and _extra_tokens(state['pos_embed']) == 0:  # DeiT3
        pos = state['pos_embed']
        state['pos_embed'] = torch.cat([pos.new_zeros(pos.shape[0], 1, pos.shape[2]), pos], 1)
    converted = {}
    if family == 'eva02':
        state, converted = _merge_eva02(state)
    unknown = []
    for name, value in state.items():
        for pattern, replacement in _RENAMES[family]:
            if re.search(pattern, name):
                converted[re.sub(pattern, replacement, name)] = value
                break
        else:
            unknown.append(name)
    if unknown:
        raise ValueError(
            f'timm keys with no mmpretrain equivalent (read as a {family} checkpoint): '
            f'{unknown[:8]}{" ..." if len(unknown) > 8 else ""}. Distilled DeiT, register tokens, '
            'pre-logits layers and other timm-only parts are not converted: use --target timm '
            'with a TimmClassifier config instead.')
    # Buffers mmpretrain saves in its state dict but timm recomputes (so they are not in its file).
    if family == 'beit':
        from mmpretrain.models.backbones.beit import RelativePositionBias
        for name in [k for k in converted if k.endswith('relative_position_bias_table')]:
            length, heads = converted[name].shape
            window = (math.isqrt(length - 3) + 1) // 2
            converted[name.replace('bias_table', 'index')] = RelativePositionBias(
                (window, window), heads).relative_position_index
    if family == 'eva02':
        dims = converted['backbone.cls_token'].shape[-1]
        cos, sin = _eva02_rope_tables(state, num_heads or dims // 64, rope_ref_grid)
        blocks = sorted({int(m.group(1)) for k in converted
                         for m in [re.match(r'^backbone\.layers\.(\d+)\.', k)] if m})
        for prefix in ['backbone.'] + [f'backbone.layers.{i}.attn.' for i in blocks]:
            converted[prefix + 'rope.freqs_cos'] = cos
            converted[prefix + 'rope.freqs_sin'] = sin
    return family, converted


def convert_timm_checkpoint(src, dst, target='mmpretrain', img_size=None, num_heads=None,
                            rope_ref_grid=16):
    """Write ``dst`` = ``{'state_dict': ..., 'meta': ...}`` for ``load_from``.

    Refuses to overwrite ``src``. Returns ``dict(family=..., tensors=...)``. Arguments after
    ``target`` as :func:`timm_to_mmpretrain` (mmpretrain target only).
    """
    if osp.realpath(src) == osp.realpath(dst) or (
            osp.exists(dst) and osp.exists(src) and osp.samefile(src, dst)):
        raise ValueError(f'destination {str(dst)!r} is the source checkpoint {str(src)!r}: '
                         'write the converted weights to another file')
    state = load_timm_state_dict(src)
    check_timm_vit(state, src)
    if target == 'mmpretrain':
        family, converted = timm_to_mmpretrain(state, img_size, num_heads, rope_ref_grid)
    elif target == 'timm':
        if img_size is not None or num_heads is not None:
            raise ValueError('--target timm keeps the checkpoint as it is: build the timm model at '
                             'the checkpoint\'s own size (no --img-size / --num-heads)')
        family, converted = 'timm', dict(state)
    else:
        raise ValueError(f"target={target!r}; use 'mmpretrain' or 'timm'")
    meta = dict(converted_from=str(src), target=target, family=family, img_size=img_size)
    try:
        with atomic_open(dst, 'wb') as f:   # a failed write leaves no half file
            torch.save({'state_dict': converted, 'meta': meta}, f)
    except RuntimeError as error:  # torch's zip writer reports a failed write as a RuntimeError
        raise OSError(f'could not write {dst} ({error}): is the disk full or a file-size limit '
                      'reached? The previous file, if any, is unchanged.') from error
    return dict(family=family, tensors=len(converted))
