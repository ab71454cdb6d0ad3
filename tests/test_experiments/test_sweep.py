"""Sweeps (robustvit_mm.experiments.sweep): the families' points on the paper's configs, the key check and
a 2-point sweep end to end through the STOCK train.py / test.py on a generated ImageNet-S tree."""
import csv
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch
from mmengine.config import Config, DictAction

from robustvit_mm.experiments.sweep import (MARKER, RESULTS, Sweep, format_cfg_value,
                                            images_per_class_used)
from robustvit_mm.experiments.sweep_families import (FAMILIES, LR_KEY, PAPER_LR_GRID,
                                                     describe_families, select_lr_near_best,
                                                     select_lr_paper)
from robustvit_mm.experiments.sweep_processes import is_alive, process_id
from stock_run_helpers import (REPO, load_state, make_tree, save_pretrained, tool_env,
                               write_config)

PAPER = osp.join(REPO, 'configs', 'robustvit', 'vit-base-p16_robustvit_imagenet-s.py')
DEIT_S = osp.join(REPO, 'configs', 'robustvit', 'deit-small-p16_robustvit_imagenet-s.py')


def test_families_on_the_paper_config(tmp_path):
    # Appendix E: only the choice of the 500 classes, the same split in every dataloader.
    sweep = Sweep('appendix-e', PAPER, work_dir=str(tmp_path / 'e'))
    assert [p.name for p in sweep.points] == ['split0', 'split1', 'split2']
    assert sweep.points[1].overrides == {
        'train_dataloader.dataset.split_seed': 1, 'val_dataloader.dataset.split_seed': 1,
        'test_dataloader.dataset.split_seed': 1}
    # Appendix G: classes and images per class of the mask dataset.
    g = Sweep('appendix-g', PAPER, work_dir=str(tmp_path / 'g'))
    assert g.points[0].overrides['train_dataloader.dataset.num_classes'] == 100
    assert g.points[0].overrides['val_dataloader.dataset.num_classes'] == 100
    assert [p.overrides['train_dataloader.dataset.num_samples'] for p in g.points
            if p.name.startswith('images')] == list(FAMILIES['appendix-g-images'].default_values)
    # lr grid: absolute learning rates; the default spans Section 4's 5e-7 to 5e-6 and holds every
    # lr of Table 5.
    grid = Sweep('lr-grid', DEIT_S, work_dir=str(tmp_path / 'lr'))
    lrs = [p.overrides[LR_KEY] for p in grid.points]
    assert lrs == list(PAPER_LR_GRID) and (min(lrs), max(lrs)) == (5e-7, 5e-6)
    assert {3e-6, 9e-7, 2e-6, 6e-7, 8e-7, 1e-6} <= set(lrs)
    lr = Sweep('lr-grid', DEIT_S, values=[5e-7, 1e-6, 2e-6], work_dir=str(tmp_path / 'lr'))
    assert [p.overrides[LR_KEY] for p in lr.points] == [5e-7, 1e-6, 2e-6]
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
    with pytest.raises(ValueError, match='learning rates > 0, got \\[0\\]'):
        Sweep('lr-grid', PAPER, values=[0, 1e-6])
    # A key the family sets itself is refused, not dropped.
    with pytest.raises(ValueError, match=r'--cfg-options optim_wrapper\.optimizer\.lr: the family '
                                         'lr-grid sets this key itself'):
        Sweep('lr-grid', PAPER, cfg_options={LR_KEY: 1e-6})
    with pytest.raises(ValueError, match='val_dataloader.dataset.split_seed: the family appendix-e'):
        Sweep('appendix-e', PAPER, cfg_options={'val_dataloader.dataset.split_seed': 5})
    # The paper's lr rule needs the pretrained model to compare with.
    no_pretrained = {'load_from': None}
    with pytest.raises(ValueError, match='has no load_from.*--lr-rule near-best'):
        Sweep('lr-grid', PAPER, cfg_options=no_pretrained)
    assert Sweep('lr-grid', PAPER, cfg_options=no_pretrained, lr_rule='near-best').points
    # The literal sorted class order ignores split_seed: a class-split sweep would repeat one split.
    sorted_order = {f'{k}_dataloader.dataset.class_order': 'sorted' for k in ('train', 'val')}
    with pytest.raises(ValueError, match="split_seed has no effect with class_order='sorted'"):
        Sweep('appendix-e', PAPER, cfg_options=sorted_order)
    assert not osp.exists(tmp_path / 'x')


def test_command_line_plan_and_errors():
    tool = [sys.executable, osp.join(REPO, 'tools', 'sweep.py')]
    out = subprocess.run(tool + ['appendix-e', PAPER, '--dry-run'], capture_output=True,
                         text=True, check=True).stdout
    assert '[3/3] split2' in out and out.count(osp.join('.mim', 'tools', 'train.py')) == 3
    assert out.count(osp.join('.mim', 'tools', 'test.py')) == 3   # the test commands too
    assert '<best checkpoint of ' in out
    assert 'test_dataloader.dataset.split_seed=2' in out
    bad = subprocess.run(tool + ['appendix-e', PAPER, '--dry-run', '--cfg-options',
                                 'train_dataloader.dataset.data_rot=x'],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and 'nothing was launched' in bad.stderr, bad.stderr
    assert "'data_rot'" in bad.stderr and 'data_root' in bad.stderr  # the keys that do exist
    assert 'Traceback' not in bad.stderr and bad.stderr.startswith('sweep.py: error: ')


def test_cfg_values_round_trip_through_dictaction():
    values = {'a': 3e-6, 'b': 0, 'c': True, 'd': None, 'e': 'data/imagenet', 'f': [1, 2],
              'g': (0.5, 0.5)}
    action = DictAction(option_strings=['--cfg-options'], dest='o', nargs='+')
    ns = type('NS', (), {})()
    action(None, ns, [f'{k}={format_cfg_value(v)}' for k, v in values.items()])
    assert ns.o == values


def write_lock(path, sweep_pid, child_pids=()):
    with open(path, 'w') as f:
        json.dump({'sweep': process_id(sweep_pid),
                   'children': [process_id(pid) for pid in child_pids]}, f)


def test_one_sweep_per_folder(tmp_path):
    sweep = Sweep('seeds', PAPER, work_dir=str(tmp_path / 's'))
    os.makedirs(sweep.work_dir)
    lock = osp.join(sweep.work_dir, 'sweep.lock')
    write_lock(lock, os.getppid())  # a live process holds the folder
    with pytest.raises(RuntimeError, match='another sweep is running .*sweep process'):
        sweep.run(log=lambda line: None)
    assert os.listdir(sweep.work_dir) == ['sweep.lock']  # nothing was started
    # The sweep is gone but its train.py still runs: not stale, a rerun would train beside it.
    child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    try:
        dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                              capture_output=True, text=True).stdout
        write_lock(lock, int(dead), [child.pid])
        with pytest.raises(RuntimeError, match=f'child process {child.pid} alive'):
            sweep.run(log=lambda line: None)
    finally:
        child.kill()
        child.wait()
    # None of the recorded processes is alive (a pid reused by a later process does not count).
    write_lock(lock, int(dead), [child.pid])
    sweep.points = []  # nothing to train: the run only writes the (empty) results
    assert sweep.run(log=lambda line: None) == []
    assert not osp.exists(lock)
    with open(lock, 'w') as f:
        json.dump({'sweep': [os.getpid(), 1], 'children': []}, f)   # our pid, another start time
    assert sweep.run(log=lambda line: None) == []


def lr_record(lr, top1, loss_cls):
    return dict(point=f'lr{lr:.3g}', overrides={LR_KEY: lr},
                metrics={'accuracy/top1': top1, 'relevance/loss_cls': loss_cls})


def test_paper_lr_rule_highest_lr_within_2_points_of_the_pretrained_model():
    pretrained = {'accuracy/top1': 80.0, 'relevance/loss_cls': 0.50}
    records = [lr_record(5e-7, 80.5, 0.40), lr_record(1e-6, 79.0, 0.45),
               lr_record(2e-6, 78.1, 0.49), lr_record(3e-6, 77.9, 0.30),   # top-1 fell 2.1
               lr_record(5e-6, 81.0, 0.51)]                                # L_cls increased
    assert select_lr_paper(records, pretrained) == 'lr2e-06'
    assert select_lr_paper(records, pretrained, tolerance=3.0) == 'lr3e-06'
    # Measured against the pretrained model, not against the best point of the grid: the
    # near-best rule picks another lr on the same results.
    assert select_lr_near_best(records) == 'lr5e-06'
    assert select_lr_paper([lr_record(1e-6, 70.0, 0.4)], pretrained) is None
    with pytest.raises(ValueError, match='needs accuracy/top1 and relevance/loss_cls'):
        select_lr_paper(records, {'accuracy/top1': 80.0})


def test_the_list_states_each_family_and_the_lr_rules():
    text = describe_families()
    assert all(f'{name}: ' in text for name in FAMILIES)
    assert "appendix-e: Appendix E" in text and 'values: 5e-07, 6e-07' in text
    assert "paper (default): Section 4's rule of thumb" in text and 'near-best: ' in text


def test_near_best_lr_rule_takes_the_largest_lr_within_tolerance_of_the_best():
    records = [lr_record(1e-6, 80.0, 0), lr_record(2e-6, 80.5, 0), lr_record(4e-6, 79.8, 0),
               lr_record(8e-6, 70.0, 0)]
    assert select_lr_near_best(records) == 'lr4e-06'          # 79.8 >= 80.5 - 1
    assert select_lr_near_best(records, tolerance=0.1) == 'lr2e-06'
    assert select_lr_near_best([dict(point='x', overrides={LR_KEY: 1}, metrics={})]) is None


def test_images_per_class_used_when_num_samples_exceeds_a_class(tmp_path):
    tree = make_tree(tmp_path / 'data')  # 4 masks per class
    config = write_config(tmp_path / 'tiny.py', tree, tmp_path / 'pretrained.pth')
    assert images_per_class_used(config) == '4'
    cfg = Config.fromfile(config)
    cfg.merge_from_dict({'train_dataloader.dataset.num_samples': 10})
    cfg.dump(str(tmp_path / 'asked10.py'))
    assert images_per_class_used(str(tmp_path / 'asked10.py')) == '4'
    cfg.merge_from_dict({'train_dataloader.dataset.num_samples': 2})
    cfg.dump(str(tmp_path / 'asked2.py'))
    assert images_per_class_used(str(tmp_path / 'asked2.py')) == '2'
    # One training class loses a mask: the classes then use 3 to 4 of the 10 asked.
    from mmpretrain.registry import DATASETS
    dataset = DATASETS.build(dict(cfg.train_dataloader.dataset.to_dict(), pipeline=[]))
    os.remove(dataset.get_data_info(0)['mask_path'])
    assert images_per_class_used(str(tmp_path / 'asked10.py')) == '3-4'


@pytest.mark.slow
def test_two_point_sweep_through_the_stock_tools(tmp_path):
    tree = make_tree(tmp_path / 'data')  # 9 classes: 6 train, 3 held out
    config = write_config(tmp_path / 'tiny.py', tree, tmp_path / 'pretrained.pth', epochs=2)
    save_pretrained(config, tmp_path / 'pretrained.pth')
    root = tmp_path / 'sweeps' / 'splits'
    env = tool_env()

    # A wrong key is refused before any training.
    with pytest.raises(ValueError, match='nothing was launched'):
        Sweep('appendix-e', config, values=[0, 1], work_dir=str(root),
              cfg_options={'model.head.temprature': 1.0})
    assert not root.exists()

    sweep = Sweep('appendix-e', config, values=[0, 1], work_dir=str(root))
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
    assert md[header].startswith('| point | split_seed | checkpoint | images/class used | ')
    assert 'accuracy/top1' in md[header]
    assert any(line.startswith('Tested checkpoint: best: ') for line in md)
    assert md[header + 2].startswith('| split0 | 0 | best (best_relevance_loss_epoch_')
    assert md[header + 2].split(' | ')[3] == '4'   # num_samples=4: what was used
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
        [sys.executable, osp.join(REPO, 'tools', 'sweep.py'), 'appendix-e', config,
         '--values', '0,1', '--work-dir', str(root)],
        env=env, capture_output=True, text=True, check=True).stdout
    assert out.count('finished before, skipped') == 2, out
    assert '| split1 | 1 |' in out and '--model split1' in out  # summary, report command
    assert [os.stat(m).st_mtime_ns for m in markers] == stamps

    # --checkpoint last on a rerun: no training, each point tested again with its last checkpoint.
    train_logs = [os.stat(osp.join(sweep.point_dir(p), 'sweep_train.log')).st_size
                  for p in sweep.points]
    out = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'sweep.py'), 'appendix-e', config,
         '--values', '0,1', '--work-dir', str(root), '--checkpoint', 'last'],
        env=env, capture_output=True, text=True, check=True).stdout
    assert out.count('trained before, tested again with the last checkpoint') == 2, out
    assert 'Tested checkpoint: last: the checkpoint of the last epoch' in out
    assert '| split1 | 1 | last (epoch_2.pth) | 4 |' in out
    assert [os.stat(osp.join(sweep.point_dir(p), 'sweep_train.log')).st_size
            for p in sweep.points] == train_logs
    last = Sweep('appendix-e', config, values=[0, 1], work_dir=str(root), checkpoint='last')
    assert [osp.basename(r['checkpoint']) for r in last.records()] == ['epoch_2.pth'] * 2
    assert [r['tested_checkpoint'] for r in last.records()] == ['last', 'last']
    stamps = [os.stat(m).st_mtime_ns for m in markers]

    # Deleting a point's marker runs that point again (its training resumes at the end, then test).
    os.remove(markers[0])
    lines.clear()
    last.run(env=env, log=lines.append)
    assert any(line.startswith('[1/2] split0: done in') for line in lines), lines
    assert any(line.startswith('[2/2] split1: finished before') for line in lines), lines
    assert osp.isfile(markers[0]) and os.stat(markers[1]).st_mtime_ns == stamps[1]

    # Another sweep's settings in the same folder are refused, not mixed in.
    with pytest.raises(ValueError, match='records another run'):
        Sweep('appendix-e', config, values=[0, 1], work_dir=str(root),
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


def wait_for(condition, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f'timed out after {timeout} s waiting for {what}')


def running_trainer(work_dir, point_dir):
    """The recorded train.py child once its first checkpoint exists, else None."""
    try:
        with open(osp.join(work_dir, 'sweep.lock')) as f:
            children = json.load(f)['children']
    except (FileNotFoundError, ValueError):
        return None
    if children and osp.isfile(osp.join(point_dir, 'epoch_1.pth')):
        return children[0]
    return None


@pytest.mark.slow
@pytest.mark.parametrize('stop', ['SIGTERM', 'SIGKILL'])
def test_a_stopped_sweep_stops_its_trainer_and_the_rerun_matches_an_uninterrupted_run(
        tmp_path, stop):
    """`kill` (SIGTERM) or `kill -9` of tools/sweep.py during a point's training: its train.py
    stops too (no second trainer on the rerun), nothing looks finished, and the rerun resumes from
    the last complete checkpoint to the same metrics and weights as a sweep never interrupted."""
    tree = make_tree(tmp_path / 'data')
    config = write_config(tmp_path / 'tiny.py', tree, tmp_path / 'pretrained.pth', epochs=4,
                          batch_size=2)
    save_pretrained(config, tmp_path / 'pretrained.pth')
    env = tool_env()
    whole = Sweep('seeds', config, values=[0], work_dir=str(tmp_path / 'whole'))
    [expected] = whole.run(env=env, log=lambda line: None)

    sweep = Sweep('seeds', config, values=[0], work_dir=str(tmp_path / 'stopped'))
    point_dir = sweep.point_dir(sweep.points[0])
    proc = subprocess.Popen([sys.executable, osp.join(REPO, 'tools', 'sweep.py'), 'seeds', config,
                             '--values', '0', '--work-dir', sweep.work_dir],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    trainer = wait_for(lambda: running_trainer(sweep.work_dir, point_dir), 300, 'epoch_1.pth')
    assert is_alive(trainer)
    proc.send_signal(getattr(signal, stop))
    out = proc.communicate(timeout=120)[0]
    wait_for(lambda: not is_alive(trainer), 60, f'train.py {trainer[0]} to stop')
    assert not osp.exists(osp.join(point_dir, MARKER))
    assert not osp.exists(osp.join(point_dir, 'epoch_4.pth')), 'stopped too late to test anything'
    if stop == 'SIGTERM':
        assert proc.returncode == 128 + signal.SIGTERM, out
        assert 'sweep.py: error: stopped by SIGTERM' in out and 'Traceback' not in out, out
        assert not osp.exists(osp.join(sweep.work_dir, 'sweep.lock'))
    else:
        assert proc.returncode == -signal.SIGKILL
        assert osp.exists(osp.join(sweep.work_dir, 'sweep.lock'))   # left behind: stale now

    [record] = sweep.run(env=env, log=lambda line: None)
    with open(osp.join(point_dir, 'sweep_train.log')) as f:
        assert '--resume' in f.read()
    assert record['metrics'] == expected['metrics']
    final, reference = (load_state(osp.join(d, 'epoch_4.pth'))['state_dict']
                        for d in (point_dir, whole.point_dir(whole.points[0])))
    assert final.keys() == reference.keys()
    assert all(torch.equal(final[k], reference[k]) for k in final)


@pytest.mark.slow
def test_lr_grid_tests_the_pretrained_model_and_marks_the_paper_rule_choice(tmp_path):
    """lr-grid with the paper's rule: test.py of the pretrained model (the reference point) on the
    same validation split, then the grid; the summary's selected point is the rule's on those
    numbers."""
    tree = make_tree(tmp_path / 'data')
    config = write_config(tmp_path / 'tiny.py', tree, tmp_path / 'pretrained.pth', epochs=1)
    save_pretrained(config, tmp_path / 'pretrained.pth')
    sweep = Sweep('lr-grid', config, values=[1e-5, 1e-3], work_dir=str(tmp_path / 'lr'))
    assert sweep.plan()[1].split()[3] == str(tmp_path / 'pretrained.pth')   # test.py CONFIG CKPT
    records = sweep.run(env=tool_env(), log=lambda line: None)
    with open(tmp_path / 'lr' / 'reference' / MARKER) as f:
        reference = json.load(f)
    assert reference['checkpoint'] == str(tmp_path / 'pretrained.pth')
    assert {'accuracy/top1', 'relevance/loss_cls'} <= set(reference['metrics'])
    expected = select_lr_paper(records, reference['metrics'])
    md = (tmp_path / 'lr' / 'sweep_summary.md').read_text()
    assert f'Selected: {expected}' in md if expected else 'Selected: none' in md
    assert "lr rule 'paper': Section 4's rule of thumb" in md
    rows = [line for line in md.splitlines() if line.startswith('| ')]
    assert rows[1].startswith('| reference (pretrained) | ')   # rows[0]: the header
    assert [r.split(' | ')[-1].rstrip(' |') for r in rows[2:]] == \
        ['yes' if r['point'] == expected else '' for r in records]
