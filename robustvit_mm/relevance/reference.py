"""GAE kept as literal as the released code: the oracle of ``gae_relevance`` in the tests and the
baseline of the training-step benchmark (``robustvit_mm.experiments.benchmark``)."""
import torch
import torch.nn.functional as F

from .capture import AttentionRecorder
from .gae import classifier_logits, readout_row


def reference_gae(model, inputs, targets=None, *, normalize=True, upsample=True,
                  dtype=torch.float32):
    """GAE the released code's way, kept literal: forward #1 with the attention recorded, one
    ``autograd.grad`` PER BLOCK, the full (B, N, N) relevance matrix R, the readout row of R (the
    class token's; the patch tokens' mean for a patch-average head) over the patches, bilinear
    upsample, per-image min-max without epsilon. Returns ``(relevance, logits)``.
    ``dtype``: of the relevance arithmetic (float32 as released; float64 to measure another
    implementation's float32 error against it).

    The comparison point of :func:`robustvit_mm.relevance.gae_relevance` (one ``autograd.grad``,
    a row vector instead of R) in the tests and of the benchmark's ``reference`` step.
    """
    with torch.enable_grad(), AttentionRecorder(model) as recorder:
        logits = classifier_logits(model, inputs)
    batch = logits.shape[0]
    if targets is None:
        targets = logits.argmax(dim=1)
    one_hot = torch.zeros_like(logits)
    one_hot[torch.arange(batch, device=logits.device), targets.to(logits.device)] = 1
    score = (one_hot * logits).sum()
    maps = recorder.maps
    tokens = maps[0].shape[-1]
    relevance = torch.eye(tokens, device=logits.device, dtype=dtype).expand(batch, tokens, tokens)
    for attn in maps:
        grad = torch.autograd.grad(score, [attn], retain_graph=True)[0]
        cam = (grad.to(dtype) * attn.to(dtype)).clamp(min=0).mean(dim=1)
        relevance = relevance + torch.bmm(cam, relevance)
    row = readout_row(recorder.readout, recorder.num_prefix, batch, tokens, logits.device)
    relevance = torch.bmm(row.to(dtype), relevance)[:, 0, recorder.num_prefix:]
    relevance = relevance.reshape(batch, 1, *recorder.grid)
    if upsample:
        relevance = F.interpolate(relevance, size=tuple(inputs.shape[-2:]), mode='bilinear')
    if normalize:
        flat = relevance.flatten(1)
        low = flat.min(dim=1, keepdim=True)[0]
        high = flat.max(dim=1, keepdim=True)[0]
        relevance = ((flat - low) / (high - low)).view_as(relevance)
    return relevance.float(), logits
