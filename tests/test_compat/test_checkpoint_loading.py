"""Safe checkpoint loading (robustvit_mm/compat/checkpoint_loading.py, docs/reliability.md).

Checkpoints load with torch's ``weights_only=True`` plus an allow-list of what mmengine checkpoints
hold (numpy arrays/dtypes/scalars, HistoryBuffer, getattr(HistoryBuffer, <statistic>)), local and
remote alike; a file whose unpickling would run code is refused (the code does not run) unless the
user opts in with ROBUSTVIT_TRUST_CHECKPOINTS=1. The end-to-end test runs the STOCK tools on the
paper's config (tiny model, generated ImageNet-S tree) and loads every checkpoint they write, with
TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD and the opt-in removed from their environment.
"""
import collections
import os
import os.path as osp
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader
from mmengine.runner import checkpoint as mmengine_checkpoint

import robustvit_mm  # noqa: F401  (importing the plugin applies the compat patches)
from robustvit_mm.compat import checkpoint_loading
from robustvit_mm.compat.checkpoint_loading import (TRUST_ENV, load_checkpoint_file,
                                                    load_from_local_safe)
from stock_run_helpers import REPO, make_tree, run, save_pretrained, tool_env, write_config

TRUST_HINT = f'{TRUST_ENV}=1'


class RunsCodeWhenUnpickled:
    """Unpickling this calls os.mkdir(marker): the side effect shows whether code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


class AsksForGetattr:
    """Pickles as getattr(owner, name): the form HistoryBuffer's statistics methods take."""

    def __init__(self, owner, name):
        self.owner, self.name = owner, name

    def __reduce__(self):
        return (getattr, (self.owner, self.name))


def mmengine_style_checkpoint(path):
    """What mmengine's Runner saves besides tensors: HistoryBuffers, numpy scalars, OrderedDict."""
    buffer = HistoryBuffer()
    for value in (0.5, 0.25, 1.0):
        buffer.update(value)
    torch.save({'meta': {'epoch': np.int64(3), 'seed': np.int32(0), 'score': np.float64(0.5)},
                'state_dict': collections.OrderedDict(w=torch.ones(2)),
                'message_hub': {'log_scalars': {'train/loss': buffer},
                                'runtime_info': {'best_score': np.float32(0.25),
                                                 'flags': np.array([True, False])}}}, path)
    return str(path)


def without_opt_in():
    env = tool_env()
    env.pop(TRUST_ENV, None)
    env.pop('ROBUSTVIT_COMPAT_OFF', None)
    return env


@pytest.fixture(autouse=True)
def no_opt_in(monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)
    monkeypatch.delenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', raising=False)


def test_local_and_remote_checkpoints_go_through_the_safe_loader():
    assert CheckpointLoader._get_checkpoint_loader('/tmp/model.pth') is load_from_local_safe
    assert CheckpointLoader._get_checkpoint_loader('work_dirs/epoch_1.pth') is load_from_local_safe
    # http(s):// (and open-mmlab://, torchvision://, mmcls://, which end there) use mmengine's
    # load_url, which is wrapped.
    assert CheckpointLoader._get_checkpoint_loader('https://x/y.pth').__name__ == 'load_from_http'
    assert mmengine_checkpoint.load_url._robustvit_safe
    robustvit_mm.compat.apply()  # idempotent
    assert not getattr(mmengine_checkpoint.load_url.__wrapped__, '_robustvit_safe', False)


def test_mmengine_style_checkpoint_loads_with_the_allow_list(tmp_path):
    path = mmengine_style_checkpoint(tmp_path / 'ckpt.pth')
    # Not moot: torch's own safe loading refuses it.
    with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer|numpy|getattr'):
        torch.load(path, map_location='cpu', weights_only=True)
    state = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    assert torch.equal(state['state_dict']['w'], torch.ones(2))
    assert isinstance(state['state_dict'], collections.OrderedDict)
    assert state['meta']['epoch'] == 3 and state['meta']['score'] == 0.5
    buffer = state['message_hub']['log_scalars']['train/loss']
    assert buffer.statistics('mean') == pytest.approx(1.75 / 3) and buffer.max() == 1.0
    assert state['message_hub']['runtime_info']['flags'].tolist() == [True, False]
    # The allow-list is active only while loading.
    assert not set(checkpoint_loading.ALLOWED_GLOBALS) & set(
        torch.serialization.get_safe_globals())

    with pytest.raises(FileNotFoundError, match='nope.pth'):
        CheckpointLoader.load_checkpoint(str(tmp_path / 'nope.pth'))


def test_code_in_a_checkpoint_does_not_run_without_the_opt_in(tmp_path, monkeypatch):
    marker = str(tmp_path / 'code_ran')
    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {'w': torch.ones(1)}, 'meta': RunsCodeWhenUnpickled(marker)}, path)

    with pytest.raises(pickle.UnpicklingError, match=rf"evil\.pth.*mkdir.*{TRUST_HINT}"):
        CheckpointLoader.load_checkpoint(path, map_location='cpu')
    with pytest.raises(pickle.UnpicklingError, match=TRUST_HINT):
        load_checkpoint_file(path)
    assert not osp.exists(marker), 'unpickling a checkpoint ran code'

    # The file really runs code when fully unpickled: the opt-in does that, and only it.
    load_checkpoint_file(path, trust=True)
    assert osp.isdir(marker)
    os.rmdir(marker)
    monkeypatch.setenv(TRUST_ENV, '1')
    CheckpointLoader.load_checkpoint(path, map_location='cpu')
    assert osp.isdir(marker)

    monkeypatch.setenv(TRUST_ENV, 'perhaps')
    with pytest.raises(ValueError, match=f'{TRUST_ENV}=.perhaps.: use 1'):
        load_checkpoint_file(path)


def test_a_refused_checkpoint_ends_in_its_message_once_without_a_chained_traceback(tmp_path):
    marker = str(tmp_path / 'code_ran')
    path = str(tmp_path / 'evil.pth')
    torch.save({'meta': RunsCodeWhenUnpickled(marker)}, path)
    with pytest.raises(pickle.UnpicklingError) as caught:
        load_checkpoint_file(path)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    # As a user sees it: the message is the last line of the traceback, once.
    code = f'import robustvit_mm; from mmengine.runner import CheckpointLoader; ' \
           f'CheckpointLoader.load_checkpoint({path!r})'
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300,
                         env=without_opt_in())
    assert out.returncode == 1 and not osp.exists(marker)
    lines = out.stderr.strip().splitlines()
    assert lines[-1].startswith("_pickle.UnpicklingError: Checkpoint '") and TRUST_HINT in lines[-1]
    assert out.stderr.count('holds objects outside the safe allow-list') == 1, out.stderr
    assert 'direct cause' not in out.stderr and 'During handling' not in out.stderr, out.stderr


@pytest.mark.parametrize('owner, name', [(HistoryBuffer, '__init__'),
                                         (HistoryBuffer, 'register_statistics'),
                                         (collections.OrderedDict, 'fromkeys')])
def test_getattr_is_allowed_only_for_history_buffer_statistics(tmp_path, owner, name):
    path = str(tmp_path / 'getattr.pth')
    torch.save({'x': AsksForGetattr(owner, name)}, path)
    with pytest.raises(pickle.UnpicklingError, match=rf"refused getattr\({owner.__name__}, "
                                                     rf"'{name}'\).*{TRUST_HINT}"):
        load_checkpoint_file(path)
    torch.save({'x': AsksForGetattr(HistoryBuffer, 'mean')}, path)
    assert load_checkpoint_file(path)['x'] is HistoryBuffer.mean


def test_remote_mmengine_checkpoint_loads_with_the_allow_list(tmp_path, monkeypatch):
    """http(s):// files get the same allow-list (a remote file that runs code: test_bad_input)."""
    good = mmengine_style_checkpoint(tmp_path / 'good.pth')
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'hub'))
    monkeypatch.setattr(torch.hub, 'download_url_to_file',
                        lambda url, dst, *a, **k: shutil.copyfile(good, dst))
    state = CheckpointLoader.load_checkpoint('https://example.invalid/good.pth', map_location='cpu')
    assert state['message_hub']['log_scalars']['train/loss'].current() == 1.0


def test_compat_off_switch_gives_back_mmengine_loaders(tmp_path):
    code = ('import robustvit_mm; from mmengine.runner import CheckpointLoader, checkpoint as c; '
            "print(CheckpointLoader._get_checkpoint_loader('/x.pth').__name__, "
            "getattr(c.load_url, '_robustvit_safe', False))")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300,
                         env=dict(without_opt_in(), ROBUSTVIT_COMPAT_OFF='checkpoint_loading'))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ['load_from_local', 'False'], out.stdout


def safe_load_every_checkpoint(work_dir):
    """Each .pth of a work dir: refused by torch's plain safe loading, loads with the allow-list."""
    names = sorted(f for f in os.listdir(work_dir) if f.endswith('.pth'))
    for name in names:
        path = osp.join(work_dir, name)
        with pytest.raises(pickle.UnpicklingError):
            torch.load(path, map_location='cpu', weights_only=True)
        state = load_checkpoint_file(path, map_location='cpu')
        assert isinstance(state['message_hub']['log_scalars']['train/loss'], HistoryBuffer), name
        assert state['state_dict'] and state['meta']['epoch'] >= 1, name
    return names


@pytest.mark.slow
def test_stock_tools_load_every_checkpoint_they_write_and_refuse_code(tmp_path):
    tree = make_tree(tmp_path / 'data')
    pretrained = tmp_path / 'pretrained.pth'
    config = write_config(tmp_path / 'tiny.py', tree, pretrained, epochs=1)
    save_pretrained(config, pretrained)
    work = str(tmp_path / 'work')
    env = without_opt_in()

    # Train (through this repo's tools/train.py, which runs the stock script): load_from safe.
    out = subprocess.run([sys.executable, osp.join(REPO, 'tools', 'train.py'), config,
                          '--work-dir', work], env=env, capture_output=True, text=True, timeout=600)
    out = out.stdout + out.stderr
    assert f'Loads checkpoint by local_safe backend from path: {pretrained}' in out, out[-3000:]
    assert 'Epoch(train) [1]' in out and osp.isfile(osp.join(work, 'epoch_1.pth')), out[-3000:]
    for message in ('MultiScaleDeformableAttention', 'pkg_resources', '"FileClient"'):
        assert message not in out, message  # entry points are quiet
    assert safe_load_every_checkpoint(work) == ['best_relevance_loss_epoch_1.pth', 'epoch_1.pth']

    # test.py CKPT with the best checkpoint.
    best = osp.join(work, 'best_relevance_loss_epoch_1.pth')
    out = run('test.py', config, best, '--work-dir', work, env=env)
    assert f'Loads checkpoint by local_safe backend from path: {best}' in out
    assert 'relevance/loss:' in out, out[-3000:]

    # --resume (last_checkpoint) to a second epoch, then test.py with the latest checkpoint.
    write_config(config, tree, pretrained, epochs=2)
    out = run('train.py', config, '--work-dir', work, '--resume', env=env)
    assert 'local_safe backend' in out and 'resumed epoch: 1' in out.lower(), out[-3000:]
    assert 'Epoch(train) [2]' in out
    with open(osp.join(work, 'last_checkpoint')) as f:
        last = f.read().strip()
    assert last == osp.join(work, 'epoch_2.pth')
    assert 'epoch_2.pth' in safe_load_every_checkpoint(work)
    out = run('test.py', config, last, '--work-dir', work, env=env)
    assert 'relevance/loss:' in out, out[-3000:]

    # A checkpoint whose unpickling runs code: test.py refuses it, names the opt-in, runs nothing.
    marker = str(tmp_path / 'code_ran')
    evil = str(tmp_path / 'evil.pth')
    state = torch.load(last, map_location='cpu', weights_only=False)
    state['meta']['payload'] = RunsCodeWhenUnpickled(marker)
    torch.save(state, evil)
    out = run('test.py', config, evil, '--work-dir', work, env=env, expect_ok=False)
    assert TRUST_HINT in out and 'UnpicklingError' in out, out[-3000:]
    assert not osp.exists(marker), 'the stock test.py ran code from a checkpoint'
