"""Record every block's post-softmax attention map of a Vision Transformer, inside the autograd graph.

Neither mmpretrain 1.2 nor timm 1.0 expose the attention probabilities: both call a fused
scaled-dot-product kernel. While an :class:`AttentionRecorder` is active we route attention through
an explicit ``softmax(q k^T * scale) @ v`` (mmpretrain: the per-module ``scaled_dot_product_attention``
attribute; timm: ``fused_attn = False`` plus a hook on ``attn_drop``), so the map after softmax and
attention dropout (the tensor multiplied by v, as in the reference) is recorded. On exit every
module is restored exactly as it was.
"""
import torch
import torch.nn.functional as F
from mmengine.model import is_model_wrapper
from mmpretrain.models.backbones import VisionTransformer as MMPretrainViT
from timm.models.vision_transformer import VisionTransformer as TimmViT

SUPPORTED_MODELS = (
    'an mmpretrain ImageClassifier whose backbone is a VisionTransformer (vit, deit, deit3, distilled '
    'DeiT), an mmpretrain TimmClassifier wrapping a timm VisionTransformer, or a bare timm '
    'VisionTransformer (optionally wrapped in DataParallel/DistributedDataParallel)')


def unwrap_model(model):
    """Strip DataParallel / (MM)DistributedDataParallel wrappers."""
    while is_model_wrapper(model) or isinstance(model, torch.nn.DataParallel):
        model = model.module
    return model


def find_vit(model):
    """Return ``(vit, family)`` for a supported model; ``family`` is 'mmpretrain' or 'timm'."""
    model = unwrap_model(model)
    for candidate in (model, getattr(model, 'backbone', None), getattr(model, 'model', None)):
        if isinstance(candidate, MMPretrainViT):
            family = 'mmpretrain'
        elif isinstance(candidate, TimmViT):
            family = 'timm'
        else:
            continue
        if num_prefix_tokens(candidate, family) == 0:
            raise ValueError(
                f'{type(candidate).__name__} has no class token (out_type/class_token setting); GAE '
                'reads the class token\'s row of the relevance matrix.')
        return candidate, family
    backbone = getattr(model, 'backbone', None)
    what = type(model).__name__ + (f' with backbone {type(backbone).__name__}' if backbone is not None
                                   else '')
    raise TypeError(f'Relevance maps are not supported for {what}. Supported: {SUPPORTED_MODELS}.')


def num_prefix_tokens(vit, family):
    """Tokens before the patch tokens: class token (+ distillation token / registers)."""
    if family == 'mmpretrain':
        return vit.num_extra_tokens
    return vit.num_prefix_tokens


def patch_size(vit, family):
    if family == 'mmpretrain':
        return tuple(vit.patch_embed.projection.stride)
    return tuple(vit.patch_embed.patch_size)


class AttentionRecorder:
    """Context manager recording ``(B, heads, N, N)`` attention maps of every block, in order.

    Usage::

        with AttentionRecorder(model) as rec:
            logits = model(inputs, mode='tensor')
        rec.maps          # list of L tensors, in the autograd graph
        rec.grid          # (h, w) patch grid of that forward
        rec.num_prefix    # tokens before the patches (1, or 2 for distilled DeiT)
    """

    def __init__(self, model):
        self.vit, self.family = find_vit(model)
        self.num_prefix = num_prefix_tokens(self.vit, self.family)
        self.patch_size = patch_size(self.vit, self.family)
        self.maps = []
        self.grid = None
        self._undo = []

    # -- mmpretrain: replace the fused kernel with an explicit one that records the probabilities --
    def _explicit_attention(self, query, key, value, attn_mask=None, dropout_p=0., scale=None,
                            is_causal=False):
        if is_causal:
            raise NotImplementedError('causal attention is not a ViT encoder')
        # torch's default scale; mmpretrain's qk_scale path divides by it (a known bug), not used.
        scale = query.size(-1) ** -0.5 if scale is None else scale
        logits = (query @ key.transpose(-2, -1)) * scale
        if attn_mask is not None:
            logits = logits + attn_mask
        attn = logits.softmax(dim=-1)
        if dropout_p > 0:  # mmpretrain passes 0 in eval mode
            attn = F.dropout(attn, dropout_p, training=True)
        self._record(attn)
        return attn @ value

    @torch.compiler.disable
    def _record(self, attn):
        """Keep a map. Never traced: under ``torch.compile`` this is a graph break, so each map is
        an output of one compiled region and an input of the next, where ``autograd.grad`` can
        reach it (a map inside a compiled region has no gradient of its own); and the list
        growing does not make dynamo recompile the attention for every block."""
        self.maps.append(attn)

    def _check_input(self, height, width):
        ph, pw = self.patch_size
        if height % ph or width % pw:
            raise ValueError(f'Input size {height}x{width} is not divisible by the patch size '
                             f'{ph}x{pw}: the relevance grid would not cover the image.')

    def __enter__(self):
        if self._undo:
            raise RuntimeError('AttentionRecorder is already active on this model')
        self.maps = []
        self.grid = None
        if self.family == 'mmpretrain':
            for layer in self.vit.layers:
                attn = layer.attn
                saved = attn.__dict__.get('scaled_dot_product_attention', _MISSING)
                attn.scaled_dot_product_attention = self._explicit_attention
                self._undo.append(lambda a=attn, s=saved: _restore_attr(
                    a, 'scaled_dot_product_attention', s))

            def on_patch_embed(module, args, output):
                self.grid = tuple(output[1])
        else:
            for block in self.vit.blocks:
                attn = block.attn
                saved = attn.__dict__.get('fused_attn', _MISSING)
                attn.fused_attn = False
                self._undo.append(lambda a=attn, s=saved: _restore_attr(a, 'fused_attn', s))
                handle = attn.attn_drop.register_forward_hook(
                    lambda module, args, output: self._record(output))
                self._undo.append(handle.remove)

            def on_patch_embed(module, args, output):
                self.grid = tuple(module.dynamic_feat_size(tuple(args[0].shape[-2:])))
        # Frozen layers (frozen_stages, requires_grad_(False)) would leave early maps outside the
        # graph and autograd.grad could not reach them: then the input carries the graph instead.
        input_needs_grad = any(not p.requires_grad for p in self.vit.parameters())

        def before_patch_embed(module, args):
            self._check_input(*args[0].shape[-2:])  # before timm's own assertion fires
            if input_needs_grad and torch.is_grad_enabled() and not args[0].requires_grad:
                return (args[0].detach().requires_grad_(True), *args[1:])
            return None

        for register, hook in ((self.vit.patch_embed.register_forward_pre_hook, before_patch_embed),
                               (self.vit.patch_embed.register_forward_hook, on_patch_embed)):
            self._undo.append(register(hook).remove)
        return self

    def __exit__(self, *exc):
        while self._undo:
            self._undo.pop()()
        return False


_MISSING = object()


def _restore_attr(obj, name, saved):
    """Put back an instance attribute, or remove ours if the class attribute was in use."""
    if saved is _MISSING:
        obj.__dict__.pop(name, None)
    else:
        setattr(obj, name, saved)
