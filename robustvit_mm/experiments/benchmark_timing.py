"""What the benchmark times and how: the variants (``ours``, ``reference``, ``plain`` training
steps; ``gae`` and ``fwd_bwd``), the check that ``ours`` and ``reference`` do equal work, and the
interleaved timing loop."""
import time

import torch
import torch.nn.functional as F

from ..models.classifier import RelevanceGuidedMixin, stack_masks
from ..relevance import gae_relevance
from ..relevance.reference import reference_gae
from .benchmark_setup import log

VARIANTS = ('ours', 'reference', 'plain', 'gae', 'fwd_bwd')
STEP_VARIANTS = ('ours', 'reference', 'plain')


def ours_losses(model, inputs, samples):
    """``RelevanceGuidedClassifier.loss`` as the runner calls it; returns (total, losses)."""
    losses = model.loss(inputs, samples)
    total, _ = model.parse_losses(losses)
    return total, losses


def reference_relevance(model, inputs, targets, dtype=torch.float32):
    """The reference-style step's relevance: :func:`reference_gae` of the targets."""
    model.zero_grad()
    return reference_gae(model, inputs, targets, dtype=dtype)[0]


def reference_losses(model, inputs, samples, dtype=torch.float32):
    """The released training step with this model's loss modules: relevance from its own
    forward, then a SECOND forward (no recording) for the confidence-boosting CE.
    Returns (total, losses)."""
    targets = torch.cat([sample.gt_label for sample in samples]).to(inputs.device)
    fg_mask = stack_masks(samples, 'fg_mask', inputs.device)
    ignore_mask = stack_masks(samples, 'ignore_mask', inputs.device)
    relevance = reference_relevance(model, inputs, targets, dtype)
    losses = dict(model.relevance_loss(relevance, fg_mask, ignore_mask))
    logits = model(inputs, mode='tensor')  # forward #2
    losses['loss_cls'] = model._classification_losses(logits, samples)['loss_cls']  # head's loss
    total = sum(value for key, value in losses.items() if 'loss' in key)
    return total, losses


def plain_losses(model, inputs, samples):
    """An ordinary fine-tuning step's loss: the parent classifier's ``loss`` (``ImageClassifier`` or
    ``TimmClassifier``: fused attention, the head's loss)."""
    losses = super(RelevanceGuidedMixin, model).loss(inputs, samples)
    total, _ = model.parse_losses(losses)
    return total, losses


LOSS_FNS = dict(ours=ours_losses, reference=reference_losses, plain=plain_losses)


def train_step(variant, model, optim_wrapper, inputs, samples):
    """One training step: loss of ``variant`` under the wrapper's (AMP) context, backward, AdamW."""
    with optim_wrapper.optim_context(model):
        total, _ = LOSS_FNS[variant](model, inputs, samples)
    optim_wrapper.update_params(total)  # backward, step, zero_grad


def gae_step(model, inputs, samples):
    targets = torch.cat([sample.gt_label for sample in samples])
    gae_relevance(model, inputs, targets)


def fwd_bwd_step(model, inputs, samples):
    targets = torch.cat([sample.gt_label for sample in samples])
    F.cross_entropy(model(inputs, mode='tensor'), targets).backward()
    model.zero_grad(set_to_none=True)


def run_variant(variant, model, optim_wrapper, inputs, samples):
    if variant in STEP_VARIANTS:
        model.train()
        train_step(variant, model, optim_wrapper, inputs, samples)
    else:
        model.eval()  # inference-time explanation cost
        (gae_step if variant == 'gae' else fwd_bwd_step)(model, inputs, samples)
        model.train()


# ----------------------------------------------------------------------------- equal work
def _gradients(model):
    return {name: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
            for name, p in model.named_parameters() if p.requires_grad}


def check_equal_work(model, inputs, samples, rtol=1e-4, variant_fns=None):
    """Do ``ours`` and ``reference`` compute the same thing? Same losses (each term) and the same
    gradient of every parameter, to ``rtol`` relative (norm of the difference over the norm of the
    reference gradient). Both run from the same weights (no optimizer step in between).

    Returns a report dict; raises ``AssertionError`` naming the first mismatches otherwise.
    """
    fns = variant_fns or LOSS_FNS
    results = {}
    for variant in ('ours', 'reference'):
        model.zero_grad(set_to_none=True)
        total, losses = fns[variant](model, inputs, samples)
        total.backward()
        results[variant] = ({k: v.detach().double() for k, v in losses.items() if 'loss' in k},
                            total.detach().double(), _gradients(model))
        model.zero_grad(set_to_none=True)
    (ours_terms, ours_total, ours_grads), (ref_terms, ref_total, ref_grads) = (
        results['ours'], results['reference'])
    problems = []
    if set(ours_terms) != set(ref_terms):
        problems.append(f'loss terms differ: {sorted(ours_terms)} vs {sorted(ref_terms)}')
    worst_loss = 0.0
    for key in sorted(set(ours_terms) & set(ref_terms)) + ['total']:
        a, b = (ours_total, ref_total) if key == 'total' else (ours_terms[key], ref_terms[key])
        rel = float((a - b).abs() / b.abs().clamp(min=1e-12))
        worst_loss = max(worst_loss, rel)
        if rel > rtol:
            problems.append(f'{key}: ours {float(a):.8g} vs reference {float(b):.8g} (rel {rel:.2e})')
    worst_grad, worst_name = 0.0, None
    diff_sq, ref_sq = 0.0, 0.0
    for name, ref in ref_grads.items():
        ours = ours_grads[name]
        diff = float((ours.double() - ref.double()).norm())
        scale = float(ref.double().norm())
        diff_sq, ref_sq = diff_sq + diff ** 2, ref_sq + scale ** 2
        rel = diff / scale if scale > 0 else (0.0 if diff == 0 else float('inf'))
        if rel > worst_grad:
            worst_grad, worst_name = rel, name
        if rel > rtol:
            problems.append(f'gradient of {name}: relative difference {rel:.2e}')
    if problems:
        raise AssertionError('ours and reference-style do not compute the same step:\n  '
                             + '\n  '.join(problems[:10])
                             + (f'\n  ... and {len(problems) - 10} more' if len(problems) > 10
                                else ''))
    return dict(rtol=rtol, worst_loss_rel=worst_loss, worst_grad_rel=worst_grad,
                worst_grad_param=worst_name,
                total_grad_rel=(diff_sq ** 0.5) / max(ref_sq ** 0.5, 1e-30),
                loss=float(ref_total), num_params=len(ref_grads))


# ----------------------------------------------------------------------------- timing
def _sync(device):
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)


def time_variants(model, optim_wrapper, inputs, samples, variants, warmup, repeats, device):
    """Interleaved (v1, v2, ..., v1, v2, ...) seconds of each variant, warm-up rounds first.

    Returns ``(wall, cpu)``: wall-clock seconds (``perf_counter``, CUDA synchronised) and this
    process's CPU seconds (``process_time``: all its threads), per variant and repeat.
    """
    times = {v: [] for v in variants}
    cpu_times = {v: [] for v in variants}
    total_rounds = warmup + repeats
    for round_index in range(total_rounds):
        warm = round_index < warmup
        for variant in variants:
            _sync(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            run_variant(variant, model, optim_wrapper, inputs, samples)
            _sync(device)
            elapsed, elapsed_cpu = time.perf_counter() - start, time.process_time() - start_cpu
            if not warm:
                times[variant].append(elapsed)
                cpu_times[variant].append(elapsed_cpu)
            log(f'  [{"warm-up" if warm else "repeat"} {round_index + 1 - (0 if warm else warmup)}'
                f'/{warmup if warm else repeats}] {variant:<9} {elapsed:8.3f} s wall '
                f'{elapsed_cpu:8.3f} s cpu')
    return times, cpu_times


class cpu_autocast:
    """bf16 autocast on CPU (mmengine's AmpOptimWrapper refuses to run without an accelerator)."""

    def __init__(self, amp):
        self.context = (torch.autocast('cpu', dtype=getattr(torch, amp)) if amp
                        else None)

    def __enter__(self):
        return self.context.__enter__() if self.context else None

    def __exit__(self, *exc):
        return self.context.__exit__(*exc) if self.context else False
