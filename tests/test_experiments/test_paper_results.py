"""The paper's published numbers shipped with the package (robustvit_mm/experiments/data/
paper_results.json): every cell of Tables 1-4 and 8-12 with its provenance, the printed average
rows re-derived from the stored cells, and the cells checked against the transcription of the
paper kept beside the clone (../shared/paper/, present in CI)."""
import json
import os.path as osp
import re

import pytest

from robustvit_mm.experiments import paper_layout
from robustvit_mm.experiments.paper_results import (AVERAGE, PAPER_RESULTS, inconsistent_averages,
                                                    load_paper_results)
from robustvit_mm.experiments.report_tables import SET_BY_KEY

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SHARED_PAPER = osp.join(osp.dirname(REPO), 'shared', 'paper')
needs_transcription = pytest.mark.skipif(
    not osp.isfile(osp.join(SHARED_PAPER, 'paper_tables.json')),
    reason=f'no transcription of the paper at {SHARED_PAPER} (it sits beside the clone in CI)')

# Cells per table: 31 printed rows x 12 + 2 average rows x 12 (Table 1), 31 x 6 (Table 2),
# 7 models x 2 rows x 3 (Table 3), 2 models x 6 rows x 9 (Tables 4, 12), 7 x 2 x 9 (Tables 8,
# 9), 3 models x 4 rows x 12 + 2 x 12 (Table 10), 3 x 4 x 6 + 2 x 6 (Table 11).
COUNTS = {'1': 396, '2': 186, '3': 42, '4': 108, '8': 126, '9': 126, '10': 168, '11': 84,
          '12': 108}


@pytest.fixture(scope='module')
def paper():
    return load_paper_results(set_keys=SET_BY_KEY)


def test_every_cell_is_stored_with_its_provenance(paper):
    with open(PAPER_RESULTS, encoding='utf-8') as f:
        data = json.load(f)
    stored = {}
    for entry in data['entries']:
        stored[entry['table']] = stored.get(entry['table'], 0) + 1
        assert entry['row'] and entry['column'], entry
    assert stored == COUNTS == {k: int(v) for k, v in data['counts'].items()}
    assert len(paper) == sum(COUNTS.values()) == 1344  # no cell stored twice
    # a few cells read off the printed tables, with their provenance
    cell = paper[('1', 'ViT-B', 'RobustViT', 'imagenet-a', 'top1')]
    assert (cell.value, cell.row, cell.column) == (24.1, 'ViT-B, Ours (annotated segmentation)',
                                                   'INet-A, R@1')
    assert paper[('1', 'ViT-B', 'TokenCut', 'imagenet-a', 'top1')].value == 23.0
    assert paper[('8', 'ViT-B', 'RobustViT', 'imagenet-a', 'top1')][:2] == (23.6, 0.7)
    assert paper[('3', 'ViT-B', 'original', 'imagenet-segmentation', 'mIoU')].value == 58.3
    assert paper[('10', AVERAGE, 'RobustViT', 'imagenet-a', 'top1_training_classes')].value == 6.4
    assert paper[('12', 'DeiT-B', 'no-fg', 'si-score-area', 'top5')].column == 'SI-size, R@5'


def test_table_1_average_rows_follow_from_its_rows(paper):
    """Both "Avg. change" rows of Table 1 are the mean over the seven architectures of (Ours -
    Original), to 0.1, in all 24 cells; a changed cell would show."""
    averages = [k for k in paper if k[0] == '1' and k[1] == AVERAGE]
    assert len(averages) == 24 and {k[2] for k in averages} == {'RobustViT', 'TokenCut'}
    assert inconsistent_averages(paper, '1') == {}
    changed = dict(paper)
    key = ('1', 'ViT-B', 'RobustViT', 'imagenet-a', 'top1')
    changed[key] = changed[key]._replace(value=changed[key].value + 7.0)  # the mean moves by 1
    assert set(inconsistent_averages(changed, '1')) == {('RobustViT', 'imagenet-a', 'top1')}


def test_tables_10_11_disagree_with_their_average_rows_where_known(paper):
    """Stored as printed: 11 of Table 10's average cells and 1 of Table 11's are not the mean of
    the printed rows; the report marks exactly those."""
    off_10 = inconsistent_averages(paper, '10')
    assert sorted(off_10) == sorted([
        ('RobustViT', 'imagenet-val', 'top1_training_classes'),
        ('RobustViT', 'imagenet-a', 'top1_training_classes'),
        ('RobustViT', 'imagenet-a', 'top5_training_classes'),
        ('RobustViT', 'imagenet-v2', 'top1_training_classes'),
        ('RobustViT', 'objectnet', 'top5_training_classes'),
        ('RobustViT', 'imagenet-val', 'top1_other_classes'),
        ('RobustViT', 'imagenet-val', 'top5_other_classes'),
        ('RobustViT', 'imagenet-a', 'top1_other_classes'),
        ('RobustViT', 'imagenet-a', 'top5_other_classes'),
        ('RobustViT', 'objectnet', 'top1_other_classes'),
        ('RobustViT', 'objectnet', 'top5_other_classes')])
    printed, recomputed = inconsistent_averages(paper, '11')[
        ('RobustViT', 'si-score-location', 'top1_other_classes')]
    assert len(inconsistent_averages(paper, '11')) == 1
    assert printed == 3.7 and recomputed == pytest.approx(3.8667, abs=1e-3)


def test_loader_refuses_entries_without_provenance(tmp_path):
    entry = dict(table='4', row='DeiT-B, w/o L_classification', column='ObjNet',
                 architecture='DeiT-B', method='No-CLS', set='objectnet', metric='top1', value=1.5)
    good = tmp_path / 'good.json'
    good.write_text(json.dumps({'entries': [entry]}))
    assert load_paper_results(str(good)) == {
        ('4', 'DeiT-B', 'no-cls', 'objectnet', 'top1'):
            (1.5, None, '4', 'DeiT-B, w/o L_classification', 'ObjNet')}
    no_row = {k: v for k, v in entry.items() if k != 'row'}
    cases = [({'entries': [no_row]}, r"entry 0 lacks \['row'\]"),
             ({'entries': [dict(entry, set='imagenet-q')]},
              "entry 0 has an unknown set 'imagenet-q'"),
             ({'entries': [entry, entry]}, 'entry 1 repeats the cell')]
    for data, message in cases:
        bad = tmp_path / 'bad.json'
        bad.write_text(json.dumps(data))
        with pytest.raises(ValueError, match=f'{re.escape(str(bad))}: {message}'):
            load_paper_results(str(bad), set_keys=SET_BY_KEY)
    bad.write_text('{"entries": [')
    with pytest.raises(ValueError, match=f'{re.escape(str(bad))}: not valid JSON'):
        load_paper_results(str(bad))


@needs_transcription
def test_stored_cells_equal_the_transcription_of_the_paper(paper):
    """Every cell of ../shared/paper/paper_tables.json is stored under the report's names with the
    same value (and std); Table 2's printed "(+x)" (read from paper.txt) is value - Original, as
    the report's Table 2 shows it."""
    with open(osp.join(SHARED_PAPER, 'paper_tables.json'), encoding='utf-8') as f:
        transcription = json.load(f)
    sets = {'INet val': 'imagenet-val', 'INet-A': 'imagenet-a', 'INet-R': 'imagenet-r',
            'Sketch': 'imagenet-sketch', 'INet-v2': 'imagenet-v2', 'ObjNet': 'objectnet',
            'SI-location': 'si-score-location', 'SI-rotation': 'si-score-rotation',
            'SI-size': 'si-score-area', 'ImageNet-segmentation': 'imagenet-segmentation'}
    methods = {'Original': 'original', 'GradMask': 'GradMask', 'RRR': 'RRR',
               'w/o L_classification': 'no-cls', 'w/o L_bg': 'no-bg', 'w/o L_fg': 'no-fg',
               'w/ ground-truth': 'gt-ce'}
    cells = transcription['cells']
    assert len(cells) == len(paper)
    assert {k: int(v) for k, v in transcription['cell_counts'].items()} == COUNTS
    for c in cells:
        method = methods.get(c['method']) or (
            'TokenCut' if c['annotated_segmentation'] is False else 'RobustViT')
        metric = c['metric'].replace('_mean_3seeds', '') + (
            f'_{c["class_subset"]}_classes' if c['class_subset'] else '')
        arch = AVERAGE if c['row_kind'] == 'avg_change' else c['model']
        stored = paper[(c['table'], arch, method, sets[c['column']], metric)]
        assert (stored.value, stored.std) == (c['value'], c['std']), c

    # Table 2 in the report's layout, with the published rows measured as they were printed:
    # its "(+x)" of ours and of the paper equal the "(+x)" printed in paper.txt
    with open(osp.join(SHARED_PAPER, 'paper.txt'), encoding='utf-8') as f:
        lines = f.read().split('\n')
    results, line_of = {}, {}
    for (table, arch, method, key, metric), cell in paper.items():
        if table == '2':
            results.setdefault(f'{arch}:{method}', {}).setdefault(key, {})[
                f'{key}_paper/{metric}'] = cell.value
    for c in cells:
        if c['table'] == '2':
            method = methods.get(c['method']) or (
                'TokenCut' if c['annotated_segmentation'] is False else 'RobustViT')
            line_of[(c['model'], method)] = c['text_line']
    table = paper_layout.table_2(paper_layout.Measured(results, list(results), 'paper'), paper)
    label = {v: k for k, v in paper_layout.PAPER_METHODS.items()}
    checked = 0
    for row in table.rows:
        method = label[row.labels[1]]
        if method == 'original':
            assert all(c.ours_plus is None and c.paper_plus is None for c in row.cells)
            continue
        printed = [float(x) for x in re.findall(r'\(([+-]?\d+\.\d)\)',
                                                lines[line_of[(row.labels[0], method)] - 1])]
        assert len(printed) == 6
        for cell, plus in zip(row.cells, printed):
            assert cell.ours_plus == pytest.approx(plus, abs=0.051)
            assert cell.paper_plus == pytest.approx(plus, abs=0.051)
            checked += 1
    assert checked == 186 - 42  # every "(+x)" of the 24 rows that are not Original
