"""The paper's published numbers (``data/paper_results.json``): every cell of Tables 1, 2, 3, 4,
8, 9, 10, 11 and 12, each with its table, printed row and column, and the report's names for it
(architecture, method, set key, metric). The file's ``about`` says how the printed rows were named
and where the paper's tables disagree with their own average rows.
"""
import json
import os.path as osp
from collections import namedtuple

PAPER_RESULTS = osp.join(osp.dirname(osp.abspath(__file__)), 'data', 'paper_results.json')

# The architectures of the paper's tables; Figure 4 and Tables 10-11 average its base models.
PAPER_ARCHITECTURES = ('ViT-B', 'ViT-L', 'AR-S', 'AR-B', 'AR-L', 'DeiT-S', 'DeiT-B')
BASE_ARCHITECTURES = ('ViT-B', 'AR-B', 'DeiT-B')
AVERAGE = 'average change'  # the architecture of the printed "Avg. change" rows

# The report's method names (ARCH:METHOD) and the paper's row labels for them.
PAPER_METHODS = {
    'original': 'Original', 'GradMask': 'GradMask', 'RRR': 'RRR',
    'RobustViT': 'Ours (annotated masks)', 'TokenCut': 'Ours (TokenCut masks)',
    'no-cls': 'w/o L_cls', 'no-bg': 'w/o L_bg', 'no-fg': 'w/o L_fg', 'gt-ce': 'w/ ground-truth',
}
# Variants this package runs that no table of the paper has (their rows say so).
EXTRA_METHODS = {'create-graph': 'create-graph (not in the paper)'}
CANONICAL = {m.lower(): m for m in (*PAPER_METHODS, *EXTRA_METHODS)}

# One published number: value (percent, or signed points in an average row), std (Tables 8-9),
# and its provenance in the paper.
Published = namedtuple('Published', 'value std table row column')
FIELDS = ('table', 'row', 'column', 'architecture', 'method', 'set', 'metric', 'value')


def canonical_method(method):
    """A method in the report's spelling ('robustvit' -> 'RobustViT'); unknown ones as given."""
    return CANONICAL.get(str(method).lower(), str(method))


def load_paper_results(path=PAPER_RESULTS, set_keys=None):
    """``{(table, architecture, method, set, metric): Published}``. Every entry must carry its
    provenance and a known set (``set_keys``); a missing field, an unknown set or a cell stored
    twice is a ``ValueError`` naming the file and the entry."""
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(f'{path}: not valid JSON ({error})') from None
    numbers = {}
    for i, entry in enumerate(data.get('entries', [])):
        lacking = [k for k in FIELDS if entry.get(k) is None]
        if lacking:
            raise ValueError(f'{path}: entry {i} lacks {lacking}: {entry}')
        if set_keys is not None and entry['set'] not in set_keys:
            raise ValueError(f'{path}: entry {i} has an unknown set {entry["set"]!r}')
        key = (str(entry['table']), entry['architecture'], canonical_method(entry['method']),
               entry['set'], entry['metric'])
        if key in numbers:
            raise ValueError(f'{path}: entry {i} repeats the cell {key}')
        numbers[key] = Published(float(entry['value']), entry.get('std'), str(entry['table']),
                                 entry['row'], entry['column'])
    return numbers


def inconsistent_averages(paper, table, tolerance=0.1):
    """The printed average-change cells of ``table`` that are not the mean, over the printed
    architectures, of (method row - Original row): ``{(method, set, metric): (printed,
    recomputed)}``. Empty for Table 1; Tables 10-11 have such cells (stored as printed)."""
    rows = {k[1:]: v.value for k, v in paper.items() if k[0] == table}
    archs = sorted({arch for arch, *_ in rows if arch != AVERAGE})
    off = {}
    for (arch, method, key, metric), printed in rows.items():
        if arch != AVERAGE:
            continue
        changes = [rows[(a, method, key, metric)] - rows[(a, 'original', key, metric)]
                   for a in archs if (a, method, key, metric) in rows
                   and (a, 'original', key, metric) in rows]
        mean = sum(changes) / len(changes)
        if abs(mean - printed) > tolerance + 1e-9:
            off[(method, key, metric)] = (printed, mean)
    return off


__all__ = ['PAPER_RESULTS', 'PAPER_ARCHITECTURES', 'BASE_ARCHITECTURES', 'AVERAGE',
           'PAPER_METHODS', 'EXTRA_METHODS', 'Published', 'canonical_method',
           'load_paper_results', 'inconsistent_averages']
