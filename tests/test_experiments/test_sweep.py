"""Sweeps (robustvit_mm.experiments.sweep): the families' points on the paper's configs, the key check and
a 2-point sweep end to end through the STOCK train.py / test.py on a generated ImageNet-S tree."""
import csv
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
from mmengine.config import Config, DictAction

from robustvit_mm.experiments.sweep import (FAMILIES, LR_KEY, MARKER, RESULTS, Sweep, format_cfg_value,
                                     select_lr)
from stock_run_helpers import REPO, make_tree, save_pretrained, tool_env, write_config

PAPER = osp.join(REPO, 'configs', 'robustvit', 'vit-base-p16_robustvit_imagenet-s.py')
DEIT_S = osp.join(REPO, 'configs', 'robustvit', 'deit-small-p16_robustvit_imagenet-s.py')


def test_families_on_the_paper_config(tmp_path):
    # Appendix E: the class split of every dataloader and the training seed move together.
    sweep = Sweep('appendix-e', PAPER, work_dir=str(tmp_path / 'e'))
    assert [p.name for p in sweep.points] == ['seed0', 'seed1', 'seed2']
    assert sweep.points[1].overrides == {
        'randomness.seed': 1, 'train_dataloader.dataset.split_seed': 1,
        'val_dataloader.dataset.split_seed': 1, 'test_dataloader.dataset.split_seed': 1}
    # Appendix G: classes and images per class of the mask dataset.
    g = Sweep('appendix-g', PAPER, work_dir=str(tmp_path / 'g'))
    assert g.points[0].overrides['train_dataloader.dataset.num_classes'] == 100
    assert g.points[0].overrides['val_dataloader.dataset.num_classes'] == 100
    assert [p.overrides['train_dataloader.dataset.num_samples'] for p in g.points
            if p.name.startswith('images')] == list(FAMILIES['appendix-g-images'].default_values)
    # lr grid: factors times the model's own lr (DeiT-S: 1e-6).
    lr = Sweep('lr-grid', DEIT_S, values=[0.5, 1, 2], work_dir=str(tmp_path / 'lr'))
    assert [p.overrides[LR_KEY] for p in lr.points] == [5e-7, 1e-6, 2e-6]
    assert Config.fromfile(DEIT_S).optim_wrapper.optimizer.lr == 1e-6
    # The training command is the stock script with the overrides as --cfg-options.
    cmd = lr.train_command(lr.points[0])
    assert cmd[1].endswith(osp.join('.mim', 'tools', 'train.py'))
    assert cmd[-2:] == ['--cfg-options', 'optim_wrapper.optimizer.lr=5e-07']
    assert not osp.exists(tmp_path / 'lr')  # planning launches and creates nothing


def test_bad_family_and_keys_fail_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match="unknown sweep family 'appendix-x'.*appendix-e"):
        Sweep('appendix-x', PAPER, work_dir=str(tmp_path / 'x'))
    with pytest.raises(ValueError, match=r"no key 'data_rot' under train_dataloader\.dataset"):
        Sweep('seeds', PAPER, work_dir=str(tmp_path / 'x'),
              cfg_options={'train_dataloader.dataset.data_rot': 'data'})
    with pytest.raises(FileNotFoundError, match='no_such_config'):
        Sweep('seeds', str(tmp_path / 'no_such_config.py'))
    with pytest.raises(ValueError, match='appendix-g-classes'):
        Sweep('appendix-g', PAPER, values=[1, 2])
    with pytest.raises(ValueError, match=r'\[2.5\] are not integers >= 0'):
        Sweep('seeds', PAPER, values=[1, 2.5])
    with pytest.raises(ValueError, match=r'\[0\] are not integers >= 1'):
        Sweep('appendix-g-images', PAPER, values=[0, 3])
    with pytest.raises(ValueError, match='factors must be > 0'):
        Sweep('lr-grid', PAPER, values=[0, 1])
    # The literal sorted class order ignores split_seed: a class-split sweep would repeat one split.
    sorted_order = {f'{k}_dataloader.dataset.class_order': 'sorted' for k in ('train', 'val')}
    with pytest.raises(ValueError, match="split_seed has no effect with class_order='sorted'"):
        Sweep('appendix-e', PAPER, cfg_options=sorted_order)
    assert not osp.exists(tmp_path / 'x')


def test_command_line_plan_and_errors():
    tool = [sys.executable, osp.join(REPO, 'tools', 'sweep.py')]
    out = subprocess.run(tool + ['appendix-e', PAPER, '--dry-run'], capture_output=True,
                         text=True, check=True).stdout
    assert '[3/3] seed2' in out and out.count(osp.join('.mim', 'tools', 'train.py')) == 3
    assert 'test_dataloader.dataset.split_seed=2' in out
    bad = subprocess.run(tool + ['appendix-e', PAPER, '--dry-run', '--cfg-options',
                                 'train_dataloader.dataset.data_rot=x'],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and 'nothing was launched' in bad.stderr, bad.stderr
    assert "'data_rot'" in bad.stderr and 'data_root' in bad.stderr  # the keys that do exist


def test_cfg_values_round_trip_through_dictaction():
    values = {'a': 3e-6, 'b': 0, 'c': True, 'd': None, 'e': 'data/imagenet', 'f': [1, 2],
              'g': (0.5, 0.5)}
    action = DictAction(option_strings=['--cfg-options'], dest='o', nargs='+')
    ns = type('NS', (), {})()
    action(None, ns, [f'{k}={format_cfg_value(v)}' for k, v in values.items()])
    assert ns.o == values


def test_one_sweep_per_folder(tmp_path):
    sweep = Sweep('seeds', PAPER, work_dir=str(tmp_path / 's'))
    os.makedirs(sweep.work_dir)
    with open(osp.join(sweep.work_dir, 'sweep.lock'), 'w') as f:
        f.write(str(os.getppid()))  # a live process holds the folder
    with pytest.raises(RuntimeError, match='another sweep .* is running'):
        sweep.run(log=lambda line: None)
    assert os.listdir(sweep.work_dir) == ['sweep.lock']  # nothing was started
    with open(osp.join(sweep.work_dir, 'sweep.lock'), 'w') as f:
        f.write('999999999')  # no such process: a stale lock, taken over
    sweep.points = []  # nothing to train: the run only writes the (empty) results
    assert sweep.run(log=lambda line: None) == []
    assert not osp.exists(osp.join(sweep.work_dir, 'sweep.lock'))


def test_lr_rule_takes_the_largest_lr_within_tolerance():
    def rec(lr, top1):
        return dict(point=f'lr{lr}', overrides={LR_KEY: lr}, metrics={'accuracy/top1': top1})
    records = [rec(1e-6, 80.0), rec(2e-6, 80.5), rec(4e-6, 79.8), rec(8e-6, 70.0)]
    assert select_lr(records) == 'lr4e-06'          # 79.8 >= 80.5 - 1
    assert select_lr(records, tolerance=0.1) == 'lr2e-06'
    assert select_lr([dict(point='x', overrides={LR_KEY: 1}, metrics={})]) is None


@pytest.mark.slow
def test_two_point_sweep_through_the_stock_tools(tmp_path):
    tree = make_tree(tmp_path / 'data')  # 9 classes: 6 train, 3 held out
    config = write_config(tmp_path / 'tiny.py', tree, tmp_path / 'pretrained.pth', epochs=2)
    save_pretrained(config, tmp_path / 'pretrained.pth')
    root = tmp_path / 'sweeps' / 'splits'
    env = tool_env()

    # A wrong key is refused before any training.
    with pytest.raises(ValueError, match='nothing was launched'):
        Sweep('class-splits', config, values=[0, 1], work_dir=str(root),
              cfg_options={'model.head.temprature': 1.0})
    assert not root.exists()

    sweep = Sweep('class-splits', config, values=[0, 1], work_dir=str(root))
    # Point split1 was interrupted after its first epoch (same command, one epoch, no marker).
    split1 = sweep.points[1]
    os.makedirs(sweep.point_dir(split1))
    subprocess.run(sweep.train_command(split1, extra={'train_cfg.max_epochs': 1}), env=env,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    assert osp.isfile(osp.join(sweep.point_dir(split1), 'epoch_1.pth'))

    lines = []
    records = sweep.run(env=env, log=lines.append)
    assert [r['point'] for r in records] == ['split0', 'split1']
    for rec, seed in zip(records, (0, 1)):
        assert rec['overrides'] == {f'{k}_dataloader.dataset.split_seed': seed
                                    for k in ('train', 'val', 'test')}
        assert {'accuracy/top1', 'relevance/loss'} <= set(rec['metrics'])
        assert osp.basename(rec['checkpoint']).startswith('best_relevance_loss_epoch_')
        with open(osp.join(rec['work_dir'], 'imagenet_s_split.json')) as f:
            split = json.load(f)
        assert split['split_seed'] == seed and len(split['train']) == 6
        rec['train_classes'] = sorted(split['train'])
    assert records[0]['train_classes'] != records[1]['train_classes']  # the override reached it
    with open(osp.join(sweep.point_dir(split1), 'sweep_train.log')) as f:
        log1 = f.read()
    assert '--resume' in log1 and 'resumed epoch: 1' in log1.lower()
    assert osp.isfile(osp.join(sweep.point_dir(split1), 'epoch_2.pth'))
    assert any(line.startswith('[2/2] split1: done in') for line in lines), lines

    with open(root / RESULTS) as f:
        saved = json.load(f)
    assert [r['point'] for r in saved] == ['split0', 'split1']
    assert set(saved[0]) >= {'point', 'config', 'overrides', 'work_dir', 'metrics'}
    with open(root / 'sweep_summary.csv') as f:
        table = list(csv.DictReader(f))
    assert [row['point'] for row in table] == ['split0', 'split1']
    assert float(table[1]['accuracy/top1']) == saved[1]['metrics']['accuracy/top1']
    md = (root / 'sweep_summary.md').read_text().splitlines()
    header = md.index(next(line for line in md if line.startswith('| point |')))
    assert md[header].startswith('| point | split_seed | ') and 'accuracy/top1' in md[header]
    assert [line.split(' | ')[0] for line in md[header + 2:]] == \
        ['| split0', '| split1', '| **mean**', '| **std**']  # repeats: mean and spread rows
    col = md[header].split(' | ').index('accuracy/top1')
    top1 = [r['metrics']['accuracy/top1'] for r in saved]
    assert float(md[-2].split(' | ')[col]) == pytest.approx(sum(top1) / 2, abs=0.01)

    # The report's models: the pretrained weights first, then each point's dumped config and
    # checkpoint.
    models = sweep.report_models()
    assert models[0] == ('pretrained', config, str(tmp_path / 'pretrained.pth'))
    assert [(m[0], m[2]) for m in models[1:]] == [(r['point'], r['checkpoint']) for r in saved]
    assert all(m[1] == osp.join(r['work_dir'], 'tiny.py') and osp.isfile(m[1])
               for m, r in zip(models[1:], saved))
    cmd = sweep.report_command('data')
    assert cmd[1] == 'tools/robustness_report.py' and cmd.count('--model') == 3

    # A rerun (the command line) skips both finished points and launches nothing.
    markers = [osp.join(sweep.point_dir(p), MARKER) for p in sweep.points]
    stamps = [os.stat(m).st_mtime_ns for m in markers]
    out = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'sweep.py'), 'class-splits', config,
         '--values', '0,1', '--work-dir', str(root)],
        env=env, capture_output=True, text=True, check=True).stdout
    assert out.count('finished before, skipped') == 2, out
    assert '| split1 | 1 |' in out and '--model split1' in out  # summary, report command
    assert [os.stat(m).st_mtime_ns for m in markers] == stamps

    # Deleting a point's marker runs that point again (its training resumes at the end, then test).
    os.remove(markers[0])
    lines.clear()
    sweep.run(env=env, log=lines.append)
    assert any(line.startswith('[1/2] split0: done in') for line in lines), lines
    assert any(line.startswith('[2/2] split1: finished before') for line in lines), lines
    assert osp.isfile(markers[0]) and os.stat(markers[1]).st_mtime_ns == stamps[1]

    # Another sweep's settings in the same folder are refused, not mixed in.
    with pytest.raises(ValueError, match='records another run'):
        Sweep('class-splits', config, values=[0, 1], work_dir=str(root),
              cfg_options={'train_cfg.max_epochs': 3}).run(env=env, log=lines.append)


def test_reproduce_doc_names_existing_configs_and_tools():
    """docs/reproduce.md: every config and tool a command names exists (placeholders expanded)."""
    import re
    with open(osp.join(REPO, 'docs', 'reproduce.md')) as f:
        text = f.read()
    prefixes = ['vit-base-p16', 'vit-large-p16', 'augreg-vit-small-p16', 'augreg-vit-base-p16',
                'augreg-vit-large-p16', 'deit-small-p16', 'deit-base-p16']
    arms = ['no-bg', 'no-fg', 'no-cls', 'gt-ce', 'create-graph']
    # (a path inside mmpretrain's package, e.g. .mim/tools/misc/print_config.py, is not the repo's)
    named = set(re.findall(r'(?<![\w./])(?:configs|tools)/[\w./<>${}-]+\.py', text))
    assert len(named) > 20, named
    for path in named:
        for p in (prefixes if '<prefix>' in path else [None]):
            for a in (arms if '${arm}' in path else [None]):
                concrete = path.replace('<prefix>', p or '').replace('${arm}', a or '')
                assert osp.isfile(osp.join(REPO, concrete)), f'{path} -> {concrete}'
