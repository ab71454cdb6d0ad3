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

Peak memory: :mod:`.benchmark_memory`. One file per part: :mod:`.benchmark_setup` (model, batch,
optimiser), :mod:`.benchmark_timing` (the variants, the equal-work check, the timing loop),
:mod:`.benchmark_memory`, :mod:`.benchmark_format` (table and ratios).
"""
import os
import statistics

import torch

from .benchmark_format import fmt_bytes, format_table, ratios
from .benchmark_memory import measure_memory_cpu, measure_memory_cuda
from .benchmark_setup import (build_model, build_optim_wrapper, compile_backbone, input_size,
                              load_model_cfg, log, make_batch)
from .benchmark_timing import VARIANTS, check_equal_work, cpu_autocast, time_variants
from .machine import machine_info

__all__ = ['run_benchmark', 'format_table', 'log', 'VARIANTS']


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
            log(f'memory: {variant}: peak {fmt_bytes(measured[variant]["peak"])}, working '
                f'{fmt_bytes(measured[variant]["working"])}')

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
    with cpu_autocast(amp if device.type == 'cpu' else None):
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
        **ratios(med, peak, working),
        cpu_time_ratios=ratios(cpu_med),
    )
