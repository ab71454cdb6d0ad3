"""Convert timm ViT/DeiT checkpoints into what mmpretrain's ``load_from`` accepts.

Two targets:
- 'mmpretrain': an ``ImageClassifier`` with ``VisionTransformer`` backbone and ViT head (the ViT-B/L
  and DeiT configs): timm's names are mapped onto mmpretrain's (``blocks.i.norm1`` ->
  ``backbone.layers.i.ln1``, ...). The math is identical (LN eps 1e-6, qkv bias, class token).
- 'timm': a ``TimmClassifier`` (the AugReg configs): timm's own names, unchanged (TimmClassifier
  strips/adds its ``model.`` prefix itself when saving/loading).
"""
import re

import torch

# timm name (regex) -> mmpretrain name
_VIT_RENAMES = [
    (r'^cls_token$', 'backbone.cls_token'),
    (r'^pos_embed$', 'backbone.pos_embed'),
    (r'^patch_embed\.proj\.', 'backbone.patch_embed.projection.'),
    (r'^blocks\.(\d+)\.norm1\.', r'backbone.layers.\1.ln1.'),
    (r'^blocks\.(\d+)\.attn\.qkv\.', r'backbone.layers.\1.attn.qkv.'),
    (r'^blocks\.(\d+)\.attn\.proj\.', r'backbone.layers.\1.attn.proj.'),
    (r'^blocks\.(\d+)\.norm2\.', r'backbone.layers.\1.ln2.'),
    (r'^blocks\.(\d+)\.mlp\.fc1\.', r'backbone.layers.\1.ffn.layers.0.0.'),
    (r'^blocks\.(\d+)\.mlp\.fc2\.', r'backbone.layers.\1.ffn.layers.1.'),
    (r'^norm\.', 'backbone.ln1.'),
    (r'^head\.', 'head.layers.head.'),
]
_NESTING_KEYS = ('state_dict', 'model', 'module')


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


def timm_vit_to_mmpretrain(state):
    """Rename a timm ViT/DeiT state dict to mmpretrain ImageClassifier names."""
    converted, unknown = {}, []
    for name, value in state.items():
        for pattern, replacement in _VIT_RENAMES:
            if re.search(pattern, name):
                converted[re.sub(pattern, replacement, name)] = value
                break
        else:
            unknown.append(name)
    if unknown:
        raise ValueError(
            f'timm keys with no mmpretrain VisionTransformer equivalent: {unknown[:8]}'
            f'{" ..." if len(unknown) > 8 else ""}. Distilled DeiT, pre-logits layers and register '
            "tokens are not converted: use --target timm with a TimmClassifier config instead.")
    return converted


def convert_timm_checkpoint(src, dst, target='mmpretrain'):
    """Write ``dst`` = ``{'state_dict': ..., 'meta': ...}`` for ``load_from``; returns the key count."""
    state = load_timm_state_dict(src)
    if target == 'mmpretrain':
        converted = timm_vit_to_mmpretrain(state)
    elif target == 'timm':
        converted = dict(state)
    else:
        raise ValueError(f"target={target!r}; use 'mmpretrain' or 'timm'")
    torch.save({'state_dict': converted, 'meta': {'converted_from': str(src), 'target': target}},
               dst)
    return len(converted)
