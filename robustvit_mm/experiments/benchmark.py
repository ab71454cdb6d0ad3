"""The training-step benchmark as library code (``tools/benchmark.py`` is its command line).

It times and sizes one RobustViT training step against the released algorithm and a plain CE step,
on the exact shapes of a config (random weights; the zero-initialised head is randomised). In ONE
run, interleaved per repeat after warm-up, medians over the repeats:

- ``ours``: one training step of ``RelevanceGuidedClassifier`` (``model.loss`` -> parse_losses ->
  backward -> AdamW, through an mmengine ``OptimWrapper``): one forward, one ``autograd.grad``
  over all attention maps, one backward (docs/faithfulness.md#single-forward);
- ``reference``: the same math done the released code's way: a forward with the attention
  recorded, a separate ``autograd.grad`` PER BLOCK, the full (B, N, N) relevance matrix, a second
  forward for the classification loss, backward, AdamW. For comparison only;
- ``plain``: an ordinary fine-tuning step of the same model (the parent classifier's ``loss``: fused
  attention, the head's loss), the floor;
- ``gae``: ``gae_relevance`` alone (eval mode) vs ``fwd_bwd``: one forward + backward of a CE loss.

Before timing, :func:`check_equal_work` verifies that ``ours`` and ``reference`` give the same losses
and the same parameter gradients (1e-4 relative), so the comparison is of equal work.

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` over one step (weights, optimizer state,
gradients and activations). On CPU each variant runs in its own process (RSS peaks are process-wide
and allocators keep freed memory), with glibc told to mmap every allocation above 64 KiB so that RSS
follows the live tensors: peak RSS (VmHWM, reset through /proc/self/clear_refs) of one step taken
once AdamW's state exists, minus the RSS before the model was built (the CPU analogue of max
allocated); "working" memory leaves out the resident weights and optimizer state.
"""
import copy
import ctypes
import gc
import multiprocessing
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from robustvit_mm.relevance.reference import reference_gae

from .machine import machine_info

# --quick: a ViT with the paper's patch size, scaled down so that the whole run takes seconds.
QUICK_BACKBONE = dict(type='VisionTransformer', img_size=112, patch_size=16, drop_rate=0.0,
                      drop_path_rate=0.0, init_cfg=None,
                      arch=dict(embed_dims=192, num_layers=6, num_heads=3,
                                feedforward_channels=768))
QUICK_NAME = 'quick (ViT 6x192, 3 heads, 112 px, patch 16)'
# The paper's optimiser (configs/_base_/schedules/robustvit_50e.py), used when a config has none.
DEFAULT_OPTIM_WRAPPER = dict(
    optimizer=dict(type='AdamW', lr=3e-6, weight_decay=1e-4, betas=(0.9, 0.999), eps=1e-8))
VARIANTS = ('ours', 'reference', 'plain', 'gae', 'fwd_bwd')
STEP_VARIANTS = ('ours', 'reference', 'plain')
# A memory child that has not answered after this long is reported as hung, never waited on forever.
MEMORY_CHILD_TIMEOUT_S = 1800


def log(message):
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- model and data
def _plain(cfg):
    return cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg)


def load_model_cfg(config, quick=False):
    """``(model, optim_wrapper, name)`` of a config file: its model dict (or the --quick shape),
    its ``optim_wrapper`` dict (what the runner would build) and its name."""
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    model_cfg = _plain(copy.deepcopy(cfg.model))
    optim_cfg = _plain(copy.deepcopy(cfg.get('optim_wrapper', DEFAULT_OPTIM_WRAPPER)))
    name = os.path.splitext(os.path.basename(config))[0]
    if quick:
        model_cfg['backbone'] = copy.deepcopy(QUICK_BACKBONE)
        model_cfg['head']['in_channels'] = QUICK_BACKBONE['arch']['embed_dims']
        name = QUICK_NAME
    return model_cfg, optim_cfg, name


def build_model(model_cfg, device='cpu', seed=0):
    """The config's classifier with random weights; the zero-initialised head is randomised."""
    import robustvit_mm  # noqa: F401  (registers)
    from mmpretrain.registry import MODELS
    model_cfg = copy.deepcopy(model_cfg)
    model_cfg.pop('init_cfg', None)
    model_cfg.pop('pretrained', None)  # TimmClassifier: never download
    if 'backbone' in model_cfg:
        model_cfg['backbone']['init_cfg'] = None
    torch.manual_seed(seed)
    model = MODELS.build(model_cfg)
    head = classifier_head(model)
    torch.nn.init.normal_(head.weight, std=head.in_features ** -0.5)  # logits ~ N(0, 1)
    torch.nn.init.normal_(head.bias, std=0.1)
    return model.to(device).train()


def classifier_head(model):
    """The final linear layer: mmpretrain ViT head (``layers.head``), a linear head's ``fc``, or
    the timm model's ``head``."""
    head = model.head if hasattr(model, 'head') else model.model.head
    if hasattr(head, 'layers'):
        return head.layers.head
    return head.fc if hasattr(head, 'fc') else head


def compile_backbone(model, **compile_kwargs):
    """``torch.compile`` the backbone in place (``nn.Module.compile``: its class stays, so the
    attention recorder still finds the ViT). mmcv's ``DropPath`` holds numpy drop rates, on which
    dynamo cannot branch (a graph break per block): they become Python floats (same values)."""
    from mmcv.cnn.bricks.drop import DropPath
    for module in model.modules():
        if isinstance(module, DropPath):
            module.drop_prob = float(module.drop_prob)
    (model.backbone if hasattr(model, 'backbone') else model.model).compile(**compile_kwargs)
    return model


def input_size(model):
    from robustvit_mm.relevance.capture import find_vit
    vit, family = find_vit(model)
    size = vit.img_size if family == 'mmpretrain' else vit.patch_embed.img_size
    return tuple(size) if isinstance(size, (tuple, list)) else (size, size)


def make_batch(model, batch, device='cpu', seed=0):
    """Normalised random images and data samples carrying fg/ignore masks and GT labels.

    Masks are ellipses drawn at 1/8 resolution and resized bilinearly, so they have fractional
    boundary pixels like the resized ImageNet-S masks of the real pipeline.
    """
    from mmpretrain.structures import DataSample
    height, width = input_size(model)
    num_classes = classifier_head(model).out_features
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randn(batch, 3, height, width, generator=gen)
    small_h, small_w = max(height // 8, 4), max(width // 8, 4)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, small_h), torch.linspace(-1, 1, small_w),
                            indexing='ij')
    samples = []
    for i in range(batch):
        cy, cx, ry, rx = (torch.rand(4, generator=gen) * torch.tensor([0.8, 0.8, 0.5, 0.5])
                          + torch.tensor([-0.4, -0.4, 0.3, 0.3])).tolist()
        blob = ((((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2) <= 1).float()
        mask = F.interpolate(blob[None, None], size=(height, width), mode='bilinear',
                             align_corners=False)[0, 0]
        sample = DataSample().set_gt_label(int(torch.randint(num_classes, (1,), generator=gen)))
        sample.set_field(mask.numpy(), 'fg_mask')
        sample.set_field(np.zeros((height, width), np.float32), 'ignore_mask')
        samples.append(sample.to(device))
    return inputs.to(device), samples


def build_optim_wrapper(model, optim_cfg=None, amp=None, fused=False):
    """The config's optimiser wrapper, built as the runner builds it (mmengine).

    ``amp``: 'bfloat16'/'float16' turns it into mmengine's ``AmpOptimWrapper`` (accelerators only).
    ``fused``: ``optimizer.fused=True`` (torch's single-pass AdamW kernel, CPU and CUDA).
    """
    from mmengine.optim import build_optim_wrapper as build
    cfg = copy.deepcopy(optim_cfg or DEFAULT_OPTIM_WRAPPER)
    cfg.setdefault('type', 'OptimWrapper')
    if fused:
        cfg['optimizer']['fused'] = True
    if amp:
        cfg.update(type='AmpOptimWrapper', dtype=amp)
    return build(model, cfg)


# ----------------------------------------------------------------------------- the variants
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
    from robustvit_mm.models.classifier import stack_masks
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
    from robustvit_mm.models.classifier import RelevanceGuidedMixin
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
    from robustvit_mm.relevance import gae_relevance
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


# ----------------------------------------------------------------------------- memory
def _rss_bytes():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def _hwm_bytes():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) * 1024
    raise RuntimeError('no VmHWM in /proc/self/status')


def _reset_hwm():
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')


def _trim_heap():
    gc.collect()
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except OSError:
        pass


def _prepare_optimizer_state(model, optim_wrapper):
    """Create AdamW's state (a step with zero gradients) so the measured step is a steady-state one."""
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.zeros_like(p)
    optim_wrapper.step()
    optim_wrapper.zero_grad(set_to_none=True)


def _allocations_to_mmap(threshold=64 * 1024):
    """Make glibc serve every allocation above ``threshold`` bytes with its own mmap, returned to
    the system when freed, so RSS follows the live tensors (not what the heap keeps cached)."""
    try:
        ctypes.CDLL('libc.so.6').mallopt(-3, threshold)  # M_MMAP_THRESHOLD; fixes it (no dynamic)
    except (OSError, AttributeError):
        pass


def _cpu_memory_child(conn, variant, model_cfg, batch, options):
    try:
        amp = options.get('amp')
        if options.get('threads'):
            torch.set_num_threads(options['threads'])
        _allocations_to_mmap()
        start_rss = _rss_bytes()
        model = build_model(model_cfg)
        if options.get('compile'):
            compile_backbone(model, backend=options['compile'])
        inputs, samples = make_batch(model, batch)
        optim_wrapper = build_optim_wrapper(model, options.get('optim_cfg'),
                                            fused=options.get('fused', False))
        _prepare_optimizer_state(model, optim_wrapper)
        if options.get('compile'):  # compile outside the measured step
            with _cpu_autocast(amp):
                run_variant(variant, model, optim_wrapper, inputs, samples)
        _trim_heap()
        resident = _rss_bytes()
        _reset_hwm()
        with _cpu_autocast(amp):
            run_variant(variant, model, optim_wrapper, inputs, samples)
        peak = _hwm_bytes()
        conn.send(dict(peak=peak - start_rss, working=peak - resident))
    except BaseException as error:  # report, never hang the parent
        conn.send(dict(error=f'{type(error).__name__}: {error}'))
    finally:
        conn.close()


def measure_memory_cpu(variant, model_cfg, batch, timeout_s=MEMORY_CHILD_TIMEOUT_S, **options):
    """Peak RSS of one step of ``variant`` in a process of its own (RSS peak is process-wide).

    ``options``: amp, compile (backend), threads, optim_cfg, fused, as for the timing.

    The process is started by a fork server (``multiprocessing`` 'forkserver'), never forked from
    this one: a plain ``fork`` copies this process's state, including OpenMP thread pools (GNU
    OpenMP hangs in a forked child once the parent has run a parallel region) and any lock another
    thread holds at that moment (a pytest run, a runner, a compile worker), so the child could
    wait forever. The fork server is a fresh interpreter that has only imported this module; its
    children start from that clean state and still share the imports' pages, so the RSS baseline
    (taken before the model is built) is the same as a fork's. A child that does not answer
    within ``timeout_s`` is killed and reported.
    """
    context = multiprocessing.get_context('forkserver')
    context.set_forkserver_preload([__name__])  # used when this call starts the server
    parent, child = context.Pipe(duplex=False)
    process = context.Process(target=_cpu_memory_child,
                              args=(child, variant, model_cfg, batch, options), daemon=True)
    process.start()
    child.close()
    try:
        if not parent.poll(timeout_s):
            raise RuntimeError(f'memory measurement of {variant!r}: no answer from its process '
                               f'(pid {process.pid}) within {timeout_s} s')
        result = parent.recv()
    except EOFError:
        result = dict(error=f'its process exited with code {process.exitcode} before answering')
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
            process.join()
        parent.close()
    if 'error' in result:
        raise RuntimeError(f'memory measurement of {variant!r} failed: {result["error"]}')
    return result


def measure_memory_cuda(variant, model, optim_wrapper, inputs, samples, device):
    optim_wrapper.zero_grad(set_to_none=True)
    gc.collect()
    torch.cuda.synchronize(device)
    resident = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    run_variant(variant, model, optim_wrapper, inputs, samples)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    return dict(peak=peak, working=peak - resident)


class _cpu_autocast:
    """bf16 autocast on CPU (mmengine's AmpOptimWrapper refuses to run without an accelerator)."""

    def __init__(self, amp):
        self.context = (torch.autocast('cpu', dtype=getattr(torch, amp)) if amp
                        else None)

    def __enter__(self):
        return self.context.__enter__() if self.context else None

    def __exit__(self, *exc):
        return self.context.__exit__(*exc) if self.context else False


# ----------------------------------------------------------------------------- report
def _fmt_bytes(value):
    return f'{value / 2 ** 20:.0f} MiB'


RATIO_LABELS = (
    ('speedup_vs_reference', 'speed-up vs reference-style (ref / ours)'),
    ('ratio_vs_plain', 'time ours / plain CE'),
    ('memory_ratio_vs_plain', 'peak memory ours / plain CE'),
    ('working_memory_ratio_vs_plain', 'working memory ours / plain CE'),
    ('memory_ratio_reference_vs_plain', 'peak memory reference / plain CE'),
    ('gae_ratio_vs_fwd_bwd', 'time gae_relevance / forward+backward'),
)
VARIANT_LABELS = dict(ours='ours (RelevanceGuided step)', reference='reference-style step',
                      plain='plain CE step', gae='gae_relevance (eval)',
                      fwd_bwd='forward+backward')


def format_table(result):
    check = result['check']
    lines = [f'model {result["model"]}, batch {result["batch"]}, '
             f'{"x".join(map(str, result["image_size"]))} px, device {result["device"]} '
             f'({result["machine"]}), {result["threads"]} torch threads, torch {result["torch"]}'
             + (f', amp {result["amp"]}' if result['amp'] else '')
             + (f', torch.compile({result["compile"]})' if result.get('compile') else '')
             + (', fused AdamW' if result['optimizer'].get('fused') else ''),
             ('equal work: NOT CHECKED (--no-check)' if check.get('skipped') else
              f'equal work: losses within {check["worst_loss_rel"]:.1e}, gradients within '
              f'{check["worst_grad_rel"]:.1e} relative (tolerance {check["rtol"]:.0e})'),
             f'{result["warmup"]} warm-up + {result["repeats"]} interleaved repeats; medians',
             '',
             f'| {"variant":<28} | {"wall s":>8} | {"cpu s":>8} | {"peak mem":>10} | '
             f'{"working mem":>11} |',
             f'|{"-" * 30}|{"-" * 10}|{"-" * 10}|{"-" * 12}|{"-" * 13}|']
    for variant in result['variants']:
        t = result['times'][variant]
        mem = result['memory'].get(variant)
        peak, work = (_fmt_bytes(mem['peak']), _fmt_bytes(mem['working'])) if mem else ('', '')
        lines.append(f'| {VARIANT_LABELS[variant]:<28} | {t["median"]:>8.3f} | '
                     f'{t["cpu_median"]:>8.3f} | {peak:>10} | {work:>11} |')
    lines += ['', f'| {"ratio":<42} | {"wall":>6} | {"cpu":>6} |', f'|{"-" * 44}|{"-" * 8}|{"-" * 8}|']
    for key, label in RATIO_LABELS:
        value, cpu_value = result.get(key), result.get('cpu_time_ratios', {}).get(key)
        if value is None:
            continue
        cpu_text = f'{cpu_value:6.2f}' if cpu_value is not None else ' ' * 6
        lines.append(f'| {label:<42} | {value:6.2f} | {cpu_text} |')
    return '\n'.join(lines)


def _ratios(values, memory_peak=None, memory_working=None):
    def ratio(a, b):
        return a / b if a is not None and b else None
    out = dict(speedup_vs_reference=ratio(values.get('reference'), values.get('ours')),
               ratio_vs_plain=ratio(values.get('ours'), values.get('plain')),
               gae_ratio_vs_fwd_bwd=ratio(values.get('gae'), values.get('fwd_bwd')))
    if memory_peak is not None:
        out.update(
            memory_ratio_vs_plain=ratio(memory_peak.get('ours'), memory_peak.get('plain')),
            working_memory_ratio_vs_plain=ratio(memory_working.get('ours'),
                                                memory_working.get('plain')),
            memory_ratio_reference_vs_plain=ratio(memory_peak.get('reference'),
                                                  memory_peak.get('plain')))
    return out


def run_benchmark(config, *, quick=False, batch=4, warmup=1, repeats=3, variants=VARIANTS,
                  device=None, threads=None, amp=None, compile=None, fused_adamw=False,
                  memory=True, check=True, rtol=1e-4):
    """Build the config's model (or the --quick shape), check equal work, time and size the
    variants; return the result dict (times, memory, ratios, the equal-work report, the machine).

    ``amp``: 'bfloat16'/'float16' (mmengine ``AmpOptimWrapper`` on CUDA; ``torch.autocast``
    bfloat16 on CPU, where the wrapper refuses to run). ``compile``: a ``torch.compile`` backend
    for the backbone. ``fused_adamw``: the config's AdamW with ``fused=True``.
    """
    if threads:
        torch.set_num_threads(threads)
    device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    model_cfg, optim_cfg, name = load_model_cfg(config, quick)
    if amp and device.type == 'cpu' and amp != 'bfloat16':
        raise ValueError('amp float16 needs CUDA; use amp=bfloat16 on CPU')
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise ValueError(f'unknown variants {sorted(unknown)}; choose from {VARIANTS}')
    variants = [v for v in VARIANTS if v in variants]
    log(f'benchmark: {name}, batch {batch}, device {device}, '
        f'{torch.get_num_threads()} threads' + (f', amp {amp}' if amp else ''))

    measured = {}
    if memory and device.type == 'cpu':
        for variant in variants:
            log(f'memory: {variant} (own process) ...')
            measured[variant] = measure_memory_cpu(
                variant, model_cfg, batch, amp=amp, compile=compile, threads=threads,
                optim_cfg=optim_cfg, fused=fused_adamw)
            log(f'memory: {variant}: peak {_fmt_bytes(measured[variant]["peak"])}, working '
                f'{_fmt_bytes(measured[variant]["working"])}')

    log('building the model ...')
    model = build_model(model_cfg, device)
    if compile:
        compile_backbone(model, backend=compile)
    inputs, samples = make_batch(model, batch, device)
    report = None
    if check:
        log('checking that ours and reference-style compute the same step (float32) ...')
        report = check_equal_work(model, inputs, samples, rtol=rtol)
        log(f'  equal: losses within {report["worst_loss_rel"]:.1e}, gradients within '
            f'{report["worst_grad_rel"]:.1e} (worst: {report["worst_grad_param"]})')

    optim_wrapper = build_optim_wrapper(model, optim_cfg,
                                        amp if amp and device.type == 'cuda' else None,
                                        fused=fused_adamw)
    log(f'timing {", ".join(variants)}: {warmup} warm-up + {repeats} repeats, interleaved ...')
    with _cpu_autocast(amp if device.type == 'cpu' else None):
        wall, cpu = time_variants(model, optim_wrapper, inputs, samples, variants, warmup,
                                  repeats, device)
        if memory and device.type == 'cuda':
            for variant in variants:
                measured[variant] = measure_memory_cuda(variant, model, optim_wrapper, inputs,
                                                        samples, device)

    med = {v: statistics.median(ts) for v, ts in wall.items()}
    cpu_med = {v: statistics.median(ts) for v, ts in cpu.items()}
    peak = {v: m['peak'] for v, m in measured.items()} if measured else None
    working = {v: m['working'] for v, m in measured.items()} if measured else None
    info = machine_info(device)
    return dict(
        model=name, config=None if quick else config, batch=batch,
        image_size=list(input_size(model)), device=str(device),
        machine=info['gpu'] if device.type == 'cuda' else f'{info["cpu"]}, {info["cores"]} cores',
        machine_info=info, torch=torch.__version__, threads=torch.get_num_threads(), amp=amp,
        compile=compile,
        optimizer=dict(optim_cfg['optimizer'], fused=True) if fused_adamw
        else optim_cfg['optimizer'], warmup=warmup, repeats=repeats,
        load_average=list(os.getloadavg()), check=report or dict(skipped=True), variants=variants,
        times={v: dict(median=med[v], min=min(wall[v]), all=wall[v], cpu_median=cpu_med[v],
                       cpu_all=cpu[v]) for v in variants},
        memory=measured,
        **_ratios(med, peak, working),
        cpu_time_ratios=_ratios(cpu_med),
    )
