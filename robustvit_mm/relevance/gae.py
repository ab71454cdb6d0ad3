"""GAE relevance (Chefer et al., ICCV 2021), as used by RobustViT; plus rollout and raw attention.

GAE, per image (Chefer et al. 2021; the RobustViT paper, Appendix B, eqs. 6-7):
    R = I;  for each block l:  Ā_l = mean_heads(relu(G_l * A_l));  R <- R + Ā_l R
    relevance = R[CLS, patch tokens], reshaped to the patch grid, bilinear to the input size,
    min-max normalised per image.
with A_l the post-softmax attention and G_l = d(target logit)/dA_l, a CONSTANT (no create_graph,
as in the released code), so the relevance is differentiable w.r.t. the weights through A_l only
(docs/faithfulness.md#gradient-constant). The upsampling and min-max are the released code's.

Only the class token's row of R is ever read. Since R = (I + Ā_{L-1}) ... (I + Ā_0), that row is
e_0^T (I + Ā_{L-1}) ... (I + Ā_0): a row vector pushed through the blocks from last to first, O(N^2)
per block instead of the O(N^3) matrix product. Same numbers (associativity), far less work.
For a model whose head pools the patch tokens (BEiT, EVA-02 as fine-tuned by their authors) the
row read is the mean of the patch tokens' rows, w^T R with w = 1/P on the P patch tokens: the same
push of a row vector, from w instead of e_0.
"""
import warnings

import torch
import torch.nn.functional as F

from .capture import AttentionRecorder, unwrap_model

# A map whose range is below this fraction of its magnitude is flat (float noise): it becomes zeros.
FLAT_RELATIVE_TOLERANCE = 1e-6
# Normalised images stay within a few units (ImageNet mean/std: -2.2..2.7; mean = std = 0.5: -1..1);
# 0-255 pixel values reach far above this.
UNNORMALISED_PEAK = 20.0


def classifier_logits(model, inputs):
    """Logits of one ordinary forward of a supported model (mmpretrain classifier or timm model)."""
    model = unwrap_model(model)
    if hasattr(model, 'data_preprocessor') and hasattr(model, 'extract_feat'):
        logits = model(inputs, mode='tensor')
    else:
        logits = model(inputs)
    if isinstance(logits, (tuple, list)):  # e.g. a head returning (cls, dist) scores
        logits = sum(logits) / len(logits)
    if not torch.is_tensor(logits) or logits.dim() != 2:
        raise TypeError(f'expected (B, num_classes) logits from {type(model).__name__}, got '
                        f'{type(logits).__name__}')
    return logits


class _GradWeightedAttention(torch.autograd.Function):
    """``mean_heads(relu(G * A))`` for a CONSTANT gradient factor ``G``, in float32.

    Same values and the same gradient w.r.t. ``A`` as the plain autograd expression (the ReLU
    passes the gradient where ``G * A > 0``, as ``clamp(min=0)`` does), but it keeps only
    references to ``G`` and ``A`` for the backward (``A`` is saved by the softmax anyway) instead of
    a float32 copy of ``G`` plus the ``(B, heads, N, N)`` product: one map fewer per block.
    """

    @staticmethod
    def forward(ctx, attn, grad):
        ctx.save_for_backward(attn, grad)
        product = grad.float() * attn.float()
        return product.clamp_(min=0).mean(dim=1)

    @staticmethod
    def backward(ctx, grad_cam):
        attn, grad = ctx.saved_tensors
        factor = grad.float()
        per_head = (grad_cam / attn.shape[1]).unsqueeze(1)  # d mean / d (each head)
        passes = (factor * attn.float()) > 0                 # d relu, as clamp(min=0)
        grad_attn = torch.where(passes, per_head, 0.) * factor
        return grad_attn.to(attn.dtype), None


def grad_weighted_attention(attn, grad):
    """``mean over heads of relu(grad * attn)`` in float32: GAE's rule 5, ``(B, N, N)``."""
    if grad.requires_grad:  # create_graph: the factor is differentiable too (second order)
        return (grad.float() * attn.float()).clamp(min=0).mean(dim=1)
    if attn.requires_grad:
        return _GradWeightedAttention.apply(attn, grad)
    return (grad.float() * attn.float()).clamp_(min=0).mean(dim=1)


def readout_row(readout, num_prefix, batch, tokens, device):
    """``(batch, 1, tokens)`` float32 weights of the tokens that reach the head: e_0 for the
    class token ('token'), 1/P on each of the P patch tokens for patch-average pooling ('avg')."""
    row = torch.zeros(batch, 1, tokens, dtype=torch.float32, device=device)
    if readout == 'token':
        row[:, :, 0] = 1
    elif readout == 'avg':
        row[:, :, num_prefix:] = 1.0 / (tokens - num_prefix)
    else:
        raise ValueError(f"readout={readout!r}; choose 'token' or 'avg'")
    return row


def gae_combine(recorder, logits, targets=None, *, keep_graph=True, create_graph=False,
                out_size=None, normalize=True):
    """GAE's combine step on a recorded forward: the target scores, ONE ``autograd.grad`` over
    every block's map, the readout row, then (optionally) bilinear to ``out_size`` and min-max.

    The one home of this step: :func:`gae_relevance` and the RobustViT training step
    (``RelevanceGuidedMixin``) both call it.

    Args:
        recorder: the :class:`AttentionRecorder` of the forward that gave ``logits``.
        targets: ``(B,)`` class indices on any device, or None for each sample's top-1.
        keep_graph: keep the forward's graph (a loss will be differentiated through it).
        create_graph: make the gradient factor differentiable (second order).
    Returns: ``(B, 1, h, w)`` (``out_size`` None) or ``(B, 1, H, W)`` float32 relevance.
    """
    if targets is None:
        targets = logits.argmax(dim=1)
    # Sum of the target logits: sample b's logit has zero gradient on other samples' maps.
    score = logits.gather(1, targets.view(-1, 1).to(logits.device)).sum()
    grads = torch.autograd.grad(score, recorder.maps, retain_graph=keep_graph or create_graph,
                                create_graph=create_graph)
    with torch.autocast(device_type=logits.device.type, enabled=False):  # float32 maps
        # Normalised maps need no constant share (the min-max after upsampling removes it).
        relevance = _patch_relevance(recorder.maps, grads, recorder.num_prefix, recorder.grid,
                                     recorder.readout, with_constant=not normalize)
        return finish_map(relevance, out_size, normalize)


def finish_map(relevance, out_size=None, normalize=True):
    """Bilinear to ``out_size`` (None keeps the grid), then per-image min-max if ``normalize``."""
    if out_size is not None:
        relevance = F.interpolate(relevance, size=tuple(out_size), mode='bilinear',
                                  align_corners=False)
    return min_max_normalize(relevance) if normalize else relevance


def _patch_relevance(maps, grads, num_prefix, grid, readout, with_constant):
    """The readout row of R over the patches, ``(B, 1, h, w)`` float32.

    The row is w + delta (w: the readout row). w's patch entries are a constant (0 for the class
    token, 1/P for a patch-average head) that a min-max removes, so it is kept apart and added only
    ``with_constant``: with a patch-average head delta can be ~1e-4 of 1/P, and in the sum its
    last digits would be lost to float32 rounding.
    """
    batch, _, tokens, _ = maps[0].shape
    start = readout_row(readout, num_prefix, batch, tokens, maps[0].device)
    delta = torch.zeros_like(start)
    for attn, grad in zip(reversed(maps), reversed(grads)):
        delta = delta + torch.bmm(start + delta, grad_weighted_attention(attn, grad))
    row = start + delta if with_constant else delta
    return row[:, 0, num_prefix:].reshape(batch, 1, *grid)


def min_max_normalize(maps):
    """Per-image min-max to [0, 1]; a flat map (no range beyond float noise) gives zeros, not NaN."""
    flat = maps.flatten(1)
    low = flat.amin(dim=1, keepdim=True)
    high = flat.amax(dim=1, keepdim=True)
    span = high - low
    is_flat = span <= FLAT_RELATIVE_TOLERANCE * torch.maximum(high.abs(), low.abs())
    safe_span = torch.where(is_flat, torch.ones_like(span), span)
    normed = torch.where(is_flat, torch.zeros_like(flat), (flat - low) / safe_span)
    return normed.view_as(maps)


# --------------------------------------------------------------------------- argument checks
# Bad arguments get an error naming the argument and the value, before the forward where they can be
# known then; otherwise torch fails deep inside (gather, conv) or, worse, gives a wrong map quietly.
DROPOUT_LAYERS = (torch.nn.Dropout, torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d,
                  torch.nn.AlphaDropout, torch.nn.FeatureAlphaDropout)


def _check_inputs(inputs):
    if not torch.is_tensor(inputs) or not inputs.is_floating_point() or inputs.dim() != 4:
        what = (f'a {tuple(inputs.shape)} {inputs.dtype} tensor' if torch.is_tensor(inputs)
                else f'a {type(inputs).__name__}')
        raise TypeError(f'inputs must be a (B, C, H, W) floating-point tensor of normalised '
                        f'images, got {what}')
    if inputs.shape[0] == 0:
        raise ValueError(f'inputs holds no image (shape {tuple(inputs.shape)})')
    bad = (~torch.isfinite(inputs)).flatten(1).any(dim=1).nonzero().flatten().tolist()
    if bad:  # one NaN pixel makes every attention map of its image, and so its relevance, NaN
        named = ', '.join(f'inputs[{i}]' for i in bad[:5]) + (
            f' and {len(bad) - 5} more' if len(bad) > 5 else '')
        raise ValueError(f'{named} {"holds" if len(bad) == 1 else "hold"} NaN/inf pixels: '
                         f'relevance of such an image would be all NaN')
    _warn_if_unnormalised(inputs)
    if inputs.is_inference():  # made under inference_mode: autograd cannot save it; a copy can
        inputs = inputs.clone()
    return inputs


def _warn_if_unnormalised(inputs):
    """Pixel values (0-255) instead of normalised images give a map of another input, silently."""
    peak = float(inputs.detach().abs().amax())
    if peak > UNNORMALISED_PEAK:
        warnings.warn(f'inputs reach |x| = {peak:g}, far outside a normalised image\'s range '
                      f'(about -3..3): they look like 0-255 pixel values. Normalise them first, as the '
                      f'model\'s data_preprocessor does (mmpretrain: '
                      f'model.data_preprocessor(dict(inputs=images))["inputs"]); the relevance '
                      f'and logits here are of the unnormalised input.', UserWarning, stacklevel=5)


def _check_targets(targets, batch):
    """None, or a ``(batch,)`` integer tensor (a list/tuple/array of ints is converted)."""
    if targets is None:
        return None
    if not torch.is_tensor(targets):
        if not isinstance(targets, (list, tuple)) and type(targets).__name__ != 'ndarray':
            raise TypeError(f'targets must be None, a (B,) integer tensor or a list of ints, got '
                            f'{type(targets).__name__}')
        try:
            targets = torch.as_tensor(targets)
        except (TypeError, ValueError, RuntimeError) as error:
            raise TypeError(f'targets must be class indices (ints), got {targets!r}') from error
    if targets.dtype == torch.bool or targets.is_floating_point() or targets.is_complex():
        raise TypeError(f'targets must be an integer tensor of class indices, got dtype '
                        f'{targets.dtype}')
    if targets.dim() != 1 or targets.shape[0] != batch:
        raise ValueError(f'targets must hold one class index per image: inputs has B={batch} '
                         f'images, targets has shape {tuple(targets.shape)} (len '
                         f'{targets.numel()})')
    return targets


def _check_target_range(targets, logits):
    """Known only after the forward: the number of classes is the logits' width."""
    num_classes = logits.shape[1]
    bad = ((targets < 0) | (targets >= num_classes)).nonzero().flatten().tolist()
    if bad:
        named = ', '.join(f'targets[{i}]={int(targets[i])}' for i in bad[:5]) + (
            f' and {len(bad) - 5} more' if len(bad) > 5 else '')
        raise ValueError(f'{named} out of range: the model has num_classes={num_classes} '
                         f'(class indices 0..{num_classes - 1})')


def _warn_if_stochastic(model):
    """A training-mode forward with dropout / drop path draws new masks each call: so does the map.

    The RobustViT recipe trains in training mode with drop rates 0: no warning there.
    """
    layers = []
    for name, module in unwrap_model(model).named_modules():
        if not module.training:
            continue
        if isinstance(module, DROPOUT_LAYERS):
            rate = module.p
        else:  # DropPath (timm, mmcv); mmpretrain MultiheadAttention keeps its rate as a float
            rate = next((v for v in (getattr(module, 'drop_prob', None),
                                     getattr(module, 'attn_drop', None))
                         if isinstance(v, float)), 0.)
        if rate > 0:
            layers.append(f'{name or type(module).__name__} ({type(module).__name__} p={rate:g})')
    if layers:
        shown = ', '.join(layers[:3]) + (f' and {len(layers) - 3} more' if len(layers) > 3 else '')
        warnings.warn(f'{type(unwrap_model(model)).__name__} is in training mode with stochastic '
                      f'layers ({shown}): each call draws new dropout / drop-path masks, so the '
                      f'relevance map (and the logits) differ from call to call. Call model.eval() '
                      f'first for a deterministic map.', UserWarning, stacklevel=4)


def _explain(model, inputs, targets, combine, normalize, upsample):
    """One forward with attention recorded, then ``combine(recorder, logits, targets, keep_graph,
    out_size, normalize)`` -> the finished map."""
    if torch.is_inference_mode_enabled():
        raise RuntimeError('relevance needs autograd (the gradient of the target logit w.r.t. '
                           'the attention maps), which torch.inference_mode() disables: call it '
                           'outside inference_mode (torch.no_grad() is fine: the results come '
                           'back detached)')
    inputs = _check_inputs(inputs)
    targets = _check_targets(targets, inputs.shape[0])
    _warn_if_stochastic(model)
    keep_graph = torch.is_grad_enabled()  # a no_grad caller gets detached results, no graph kept
    out_size = tuple(inputs.shape[-2:]) if upsample else None
    with torch.enable_grad(), AttentionRecorder(model) as recorder:
        logits = classifier_logits(model, inputs)
        if targets is not None:
            _check_target_range(targets, logits)
        relevance = combine(recorder, logits, targets, keep_graph, out_size, normalize)
    if not keep_graph:
        relevance, logits = relevance.detach(), logits.detach()
    return relevance, logits


def gae_relevance(model, inputs, targets=None, *, normalize=True, upsample=True,
                  create_graph=False):
    """GAE relevance maps of a Vision Transformer, with the logits of the same forward.

    Args:
        model: an mmpretrain ``ImageClassifier`` with a ViT-family backbone, a ``TimmClassifier``
            wrapping a timm ViT, or a timm ``VisionTransformer`` (wrappers are unwrapped).
        inputs: ``(B, 3, H, W)`` normalised images.
        targets: ``(B,)`` class indices to explain (an integer tensor, or a list of ints), or
            None for each sample's top-1.
        normalize: per-image min-max to [0, 1]; False gives the raw relevance.
        upsample: bilinear to ``(H, W)``; False gives the patch grid ``(B, 1, h, w)``.
        create_graph: make the gradient factor differentiable (second order); the released code
            keeps it constant (docs/faithfulness.md#gradient-constant).

    Returns:
        ``(relevance, logits)``: ``(B, 1, H, W)`` float32 and ``(B, num_classes)``. One forward and
        ONE ``autograd.grad`` over all blocks' maps. Works under ``torch.no_grad()`` callers.
    """
    def combine(recorder, logits, targets, keep_graph, out_size, normalize):
        return gae_combine(recorder, logits, targets, keep_graph=keep_graph,
                           create_graph=create_graph, out_size=out_size, normalize=normalize)

    return _explain(model, inputs, targets, combine, normalize, upsample)


def _class_agnostic(name, targets):
    if targets is not None:
        warnings.warn(f'{name} is class-agnostic: the targets passed are ignored and every class '
                      'gets the same map. Use gae_relevance for a class-specific map.',
                      UserWarning, stacklevel=3)


def attention_rollout(model, inputs, targets=None, *, normalize=True, upsample=True):
    """Attention rollout (Abnar & Zuidema 2020): R = prod_l (0.5 I + 0.5 mean_heads A_l), the row
    of the tokens that reach the head (class token, or the patch mean for patch-average pooling).

    Class-agnostic: ``targets`` is accepted for the signature :func:`gae_relevance` has, and
    ignored (a ``UserWarning`` says so when targets are passed).
    """
    _class_agnostic('attention_rollout', targets)

    def combine(recorder, logits, targets, keep_graph, out_size, normalize):
        maps = recorder.maps
        batch, _, tokens, _ = maps[0].shape
        with torch.autocast(device_type=logits.device.type, enabled=False):
            row = readout_row(recorder.readout, recorder.num_prefix, batch, tokens,
                              maps[0].device)
            for attn in reversed(maps):
                row = 0.5 * row + 0.5 * torch.bmm(row, attn.float().mean(dim=1))
            grid = row[:, 0, recorder.num_prefix:].reshape(batch, 1, *recorder.grid)
            return finish_map(grid, out_size, normalize)

    return _explain(model, inputs, targets, combine, normalize, upsample)


def raw_attention(model, inputs, targets=None, *, normalize=True, upsample=True):
    """The last block's head-averaged attention of the class token (or, for patch-average pooling,
    of the mean patch token) to the patches.

    Class-agnostic: ``targets`` is accepted for the signature :func:`gae_relevance` has, and
    ignored (a ``UserWarning`` says so when targets are passed).
    """
    _class_agnostic('raw_attention', targets)

    def combine(recorder, logits, targets, keep_graph, out_size, normalize):
        with torch.autocast(device_type=logits.device.type, enabled=False):
            last = recorder.maps[-1].float().mean(dim=1)
            batch, tokens = last.shape[0], last.shape[-1]
            row = readout_row(recorder.readout, recorder.num_prefix, batch, tokens, last.device)
            grid = torch.bmm(row, last)[:, 0, recorder.num_prefix:].reshape(
                batch, 1, *recorder.grid)
            return finish_map(grid, out_size, normalize)

    return _explain(model, inputs, targets, combine, normalize, upsample)


#: One name per explainer: the name of its function ('gae' for :func:`gae_relevance`).
EXPLAINERS = {'gae': gae_relevance, 'attention_rollout': attention_rollout,
              'raw_attention': raw_attention}
# Short names taught elsewhere once; refused, naming the canonical one.
_RETIRED_NAMES = {'rollout': 'attention_rollout', 'raw': 'raw_attention'}


def get_explainer(name):
    """The explanation function called ``name``: one of :data:`EXPLAINERS`, 'gae' (the paper's),
    'attention_rollout' or 'raw_attention'."""
    if name in _RETIRED_NAMES:
        raise ValueError(f'relevance method {name!r} is called {_RETIRED_NAMES[name]!r}; choose '
                         f'one of {list(EXPLAINERS)}')
    if name not in EXPLAINERS:
        raise ValueError(f'unknown relevance method {name!r}; choose one of {list(EXPLAINERS)}')
    return EXPLAINERS[name]
