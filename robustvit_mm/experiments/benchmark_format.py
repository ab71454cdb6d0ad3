"""The benchmark's result as text: the table of times and memory per variant and the ratios
(docs/performance.md is where the measured ratios are recorded)."""


def fmt_bytes(value):
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
        peak, work = (fmt_bytes(mem['peak']), fmt_bytes(mem['working'])) if mem else ('', '')
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


def ratios(values, memory_peak=None, memory_working=None):
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
