"""Record every block's post-softmax attention map of a Vision Transformer, inside the autograd graph.

Neither mmpretrain 1.2 nor timm 1.0 expose the attention probabilities. While an
:class:`AttentionRecorder` is active, each block's attention is made to show its map without a copy
of any model code:

- mmpretrain ``MultiheadAttention`` (ViT, DeiT, DeiT3, distilled DeiT, DINOv2 archs) calls a fused
  kernel stored in its ``scaled_dot_product_attention`` attribute: that attribute is replaced by an
  explicit ``softmax(q k^T * scale) @ v`` that records the probabilities;
- mmpretrain ``BEiTAttention`` (BEiT, BEiT-v2: relative position bias) and ``AttentionWithRoPE``
  (EVA-02: rotary embeddings) compute the softmax explicitly: a hook on their ``attn_drop`` sees it;
- timm ``Attention`` / Beit ``Attention`` / ``EvaAttention`` choose the fused kernel through
  ``fused_attn``: it is set to False, and a hook on ``attn_drop`` sees the map.

The recorded map is the one multiplied by v (after attention dropout, as in the released code). On
exit every module is restored exactly as it was (attribute, ``fused_attn`` flag, hooks).

Relevance is read from the class token's row of the relevance matrix, or, for a model whose head
pools the patch tokens (``out_type='avg_featmap'``, timm ``global_pool='avg'``: BEiT and EVA-02 as
fine-tuned by their authors), from the mean of the patch tokens' rows: the rows that reach the head.
"""
import torch
import torch.nn.functional as F
from mmengine.model import is_model_wrapper
from mmpretrain.models.backbones import BEiTViT
from mmpretrain.models.backbones import VisionTransformer as MMPretrainViT
from mmpretrain.models.backbones.vit_eva02 import AttentionWithRoPE
from mmpretrain.models.utils.attention import BEiTAttention, MultiheadAttention
from timm.models.beit import Beit as TimmBeit
from timm.models.eva import Eva as TimmEva
from timm.models.vision_transformer import VisionTransformer as TimmViT

SUPPORTED_MODELS = (
    'an mmpretrain ImageClassifier whose backbone is a VisionTransformer (vit, deit, deit3, '
    'distilled DeiT, DINOv2 archs), BEiTViT (BEiT, BEiT-v2) or ViTEVA02 (EVA-02); an mmpretrain '
    'TimmClassifier wrapping a timm VisionTransformer, Beit or Eva (EVA-02, with or without '
    'registers); or such a bare timm model (optionally wrapped in DataParallel/'
    'DistributedDataParallel); each with a class token and class-token or patch-average pooling')
# Attention backbones that cannot be supported, and why (the TypeError says it).
UNSUPPORTED_REASONS = {
    'RevVisionTransformer': 'its reversible blocks recompute activations during the backward pass '
                            'and free them in the forward, so attention maps cannot be kept in the '
                            'autograd graph',
    'SwinTransformer': 'window attention has no class token and no global token-to-token map',
    'SwinTransformerV2': 'window attention has no class token and no global token-to-token map',
}


class UnsupportedModelError(TypeError):
    """A model whose relevance cannot be computed (raised at build time and at the first call)."""


def unwrap_model(model):
    """Strip DataParallel / (MM)DistributedDataParallel wrappers."""
    while is_model_wrapper(model) or isinstance(model, torch.nn.DataParallel):
        model = model.module
    return model


class FamilyAdapter:
    """What differs between the two families of ViT implementations, in one place: which classes
    belong to it, the tokens before the patches, the patch size, the pooling setting, the blocks,
    how a block's attention map is recorded and the patch grid of a forward."""
    name = None
    model_classes = ()

    def num_prefix(self, vit):
        """Tokens before the patch tokens: class token (+ distillation token / registers)."""
        raise NotImplementedError

    def patch_size(self, vit):
        raise NotImplementedError

    def pooling(self, vit):
        """``(pooling, setting)``: 'token', 'avg' or None (unknown), and the setting saying so."""
        raise NotImplementedError

    def blocks(self, vit):
        raise NotImplementedError

    def recording(self, attn):
        """'sdpa' (replace the fused-kernel attribute), 'attn_drop' (hook the dropout applied to
        the explicit softmax) or None (this attention cannot be recorded)."""
        raise NotImplementedError

    def grid(self, patch_embed, args, output):
        """The ``(h, w)`` patch grid, from the patch embedding's forward hook."""
        raise NotImplementedError


class MMPretrainAdapter(FamilyAdapter):
    name = 'mmpretrain'
    model_classes = (MMPretrainViT, BEiTViT)  # ViTEVA02, DeiT3, distilled DeiT: subclasses

    def num_prefix(self, vit):
        return vit.num_extra_tokens

    def patch_size(self, vit):
        return tuple(vit.patch_embed.projection.stride)

    def pooling(self, vit):
        return ({'cls_token': 'token', 'avg_featmap': 'avg'}.get(vit.out_type),
                f'out_type={vit.out_type!r}')

    def blocks(self, vit):
        return vit.layers

    def recording(self, attn):
        if isinstance(attn, MultiheadAttention):
            return 'sdpa'
        if isinstance(attn, (BEiTAttention, AttentionWithRoPE)):
            return 'attn_drop'
        return None

    def grid(self, patch_embed, args, output):
        return tuple(output[1])


class TimmAdapter(FamilyAdapter):
    name = 'timm'
    model_classes = (TimmViT, TimmBeit, TimmEva)

    def num_prefix(self, vit):
        return vit.num_prefix_tokens

    def patch_size(self, vit):
        return tuple(vit.patch_embed.patch_size)

    def pooling(self, vit):
        if getattr(vit, 'attn_pool', None) is not None:
            return None, 'attention pooling (global_pool="map")'
        return ({'token': 'token', 'avg': 'avg'}.get(vit.global_pool),
                f'global_pool={vit.global_pool!r}')

    def blocks(self, vit):
        return vit.blocks

    def recording(self, attn):
        if hasattr(attn, 'fused_attn') and isinstance(getattr(attn, 'attn_drop', None),
                                                      torch.nn.Module):
            return 'attn_drop'
        return None

    def grid(self, patch_embed, args, output):
        return tuple(patch_embed.dynamic_feat_size(tuple(args[0].shape[-2:])))


ADAPTERS = {adapter.name: adapter for adapter in (MMPretrainAdapter(), TimmAdapter())}


def find_vit(model):
    """Return ``(vit, family)`` for a supported model; ``family`` is 'mmpretrain' or 'timm'
    (``ADAPTERS[family]`` knows its details).

    Raises :class:`UnsupportedModelError` (a ``TypeError``) saying why for any other model.
    """
    model = unwrap_model(model)
    candidates = [model, getattr(model, 'backbone', None), getattr(model, 'model', None)]
    for candidate in candidates:
        family = next((name for name, adapter in ADAPTERS.items()
                       if isinstance(candidate, adapter.model_classes)), None)
        if family is None:
            continue
        if candidate.cls_token is None:
            raise UnsupportedModelError(
                f'{type(candidate).__name__} has no class token (with_cls_token / class_token '
                'setting): GAE reads the class token\'s row of the relevance matrix.')
        readout(candidate, family)  # refuses poolings other than class token / patch average
        attention_modules(candidate, family)  # refuses attention whose map cannot be recorded
        return candidate, family
    named = [type(c).__name__ for c in candidates if c is not None]
    for name in named:
        if name in UNSUPPORTED_REASONS:
            raise UnsupportedModelError(
                f'Relevance maps are not supported for {name}: {UNSUPPORTED_REASONS[name]}.')
    backbone = getattr(model, 'backbone', None)
    what = type(model).__name__ + (f' with backbone {type(backbone).__name__}' if backbone is not None
                                   else '')
    raise UnsupportedModelError(
        f'Relevance maps are not supported for {what}. Supported: {SUPPORTED_MODELS}.')


def readout(vit, family):
    """Which tokens' outputs reach the head: 'token' (the class token) or 'avg' (patch mean)."""
    pooling, setting = ADAPTERS[family].pooling(vit)
    if pooling is None:
        raise UnsupportedModelError(
            f'{type(vit).__name__} with {setting}: relevance is read from the class token '
            '(out_type="cls_token" / global_pool="token") or the patch average ("avg_featmap" / '
            '"avg"), the tokens that reach the head; with this setting it is not known which do.')
    return pooling


def attention_modules(vit, family):
    """Per block, ``(attention module, how its map is recorded)``: 'sdpa' or 'attn_drop'
    (:meth:`FamilyAdapter.recording`)."""
    if getattr(vit, 'grad_checkpointing', False):
        raise UnsupportedModelError(
            f'{type(vit).__name__} has gradient checkpointing on: its blocks are recomputed in the '
            'backward pass, outside the recorder, so the recorded maps are not the tensors autograd '
            'differentiates. Turn it off (model.set_grad_checkpointing(False)).')
    adapter = ADAPTERS[family]
    found = []
    for index, block in enumerate(adapter.blocks(vit)):
        attn = getattr(block, 'attn', None)
        how = adapter.recording(attn) if attn is not None else None
        if how is None:
            raise UnsupportedModelError(
                f'{type(vit).__name__} block {index} ({type(block).__name__}): its attention '
                f'({type(attn).__name__}) does not expose post-softmax probabilities in a way '
                'that can be recorded.')
        found.append((attn, how))
    return found


class AttentionRecorder:
    """Context manager recording ``(B, heads, N, N)`` attention maps of every block, in order.

    Usage::

        with AttentionRecorder(model) as rec:
            logits = model(inputs, mode='tensor')
        rec.maps          # list of L tensors, in the autograd graph
        rec.grid          # (h, w) patch grid of that forward
        rec.num_prefix    # tokens before the patches (1; 2 for distilled DeiT; 1 + registers)
        rec.readout       # 'token' (class token) or 'avg' (mean of the patch tokens)

    A forward of the model in which some block recorded no map raises ``RuntimeError`` at once,
    naming the model and the blocks.
    """

    def __init__(self, model):
        self.vit, self.family = find_vit(model)
        self.adapter = ADAPTERS[self.family]
        self.num_prefix = self.adapter.num_prefix(self.vit)
        self.patch_size = self.adapter.patch_size(self.vit)
        self.readout = readout(self.vit, self.family)
        self.maps = []
        self.grid = None
        self._seen = []
        self._undo = []

    # -- mmpretrain MultiheadAttention: an explicit kernel in place of the fused one --
    def _explicit_attention(self, index):
        def attention(query, key, value, attn_mask=None, dropout_p=0., scale=None,
                      is_causal=False):
            if is_causal:
                raise NotImplementedError('causal attention is not a ViT encoder')
            # torch's default scale; mmpretrain's qk_scale path divides by it (a known bug).
            scale = query.size(-1) ** -0.5 if scale is None else scale
            logits = (query @ key.transpose(-2, -1)) * scale
            if attn_mask is not None:
                logits = logits + attn_mask
            attn = logits.softmax(dim=-1)
            if dropout_p > 0:  # mmpretrain passes 0 in eval mode
                attn = F.dropout(attn, dropout_p, training=True)
            self._record(index, attn)
            return attn @ value
        return attention

    @torch.compiler.disable
    def _record(self, index, attn):
        """Keep a map. Never traced: under ``torch.compile`` this is a graph break, so each map is
        an output of one compiled region and an input of the next, where ``autograd.grad`` can
        reach it (a map inside a compiled region has no gradient of its own); and the list
        growing does not make dynamo recompile the attention for every block."""
        self.maps.append(attn)
        self._seen[index] += 1

    @torch.compiler.disable
    def _start_forward(self, module, args):
        self._seen = [0] * len(self._seen)

    @torch.compiler.disable
    def _check_forward(self, module, args, output):
        missing = [i for i, count in enumerate(self._seen) if count == 0]
        if missing:
            raise RuntimeError(
                f'AttentionRecorder: a forward of {type(self.vit).__name__} recorded no attention '
                f'map in block(s) {missing} of {len(self._seen)}: that attention computes its '
                'probabilities in a way the recorder does not reach.')

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
        modules = attention_modules(self.vit, self.family)
        self._seen = [0] * len(modules)
        for index, (attn, how) in enumerate(modules):
            if how == 'sdpa':
                saved = attn.__dict__.get('scaled_dot_product_attention', _MISSING)
                attn.scaled_dot_product_attention = self._explicit_attention(index)
                self._undo.append(lambda a=attn, s=saved: _restore_attr(
                    a, 'scaled_dot_product_attention', s))
                continue
            if 'fused_attn' in attn.__dict__ or hasattr(type(attn), 'fused_attn'):
                saved = attn.__dict__.get('fused_attn', _MISSING)
                attn.fused_attn = False
                self._undo.append(lambda a=attn, s=saved: _restore_attr(a, 'fused_attn', s))
            handle = attn.attn_drop.register_forward_hook(
                lambda module, args, output, i=index: self._record(i, output))
            self._undo.append(handle.remove)

        def on_patch_embed(module, args, output):
            self.grid = self.adapter.grid(module, args, output)
        # Frozen layers (frozen_stages, requires_grad_(False)) would leave early maps outside the
        # graph and autograd.grad could not reach them: then the input carries the graph instead.
        input_needs_grad = any(not p.requires_grad for p in self.vit.parameters())

        def before_patch_embed(module, args):
            self._check_input(*args[0].shape[-2:])  # before timm's own assertion fires
            if input_needs_grad and torch.is_grad_enabled() and not args[0].requires_grad:
                return (args[0].detach().requires_grad_(True), *args[1:])
            return None

        for register, hook in ((self.vit.patch_embed.register_forward_pre_hook, before_patch_embed),
                               (self.vit.patch_embed.register_forward_hook, on_patch_embed),
                               (self.vit.register_forward_pre_hook, self._start_forward),
                               (self.vit.register_forward_hook, self._check_forward)):
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
