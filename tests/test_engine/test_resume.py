"""An interrupted run resumes where it was, through the STOCK train.py and ``--resume``.

Deterministic pipeline (Resize only) and ``randomness=dict(seed=0, deterministic=True)``: a run of 2
epochs, and a run of 1 epoch resumed with ``--resume`` to 2 epochs, end with the same weights, the same
optimizer/scheduler state and the same best checkpoint (name and metric). A work dir copied after
epoch 1 resumes from ITS OWN files, although ``last_checkpoint`` and the checkpoint's runtime info
store absolute paths into the original directory, and it deletes nothing there (mmengine would
remove the original's best checkpoint once the copy finds a better one).

With random transforms (RandomCrop/RandomFlip) a resumed run is NOT bit-identical: the crops and
flips are drawn from the global numpy/python RNGs (and dataloader workers' seeds), whose states are
not saved in the checkpoint; after --resume epoch 2 draws what a fresh epoch 1 would. See
docs/reliability.md.
"""
import os
import os.path as osp
import shutil

import pytest
import torch

from stock_run_helpers import (finish, load_state, make_tree, run, save_pretrained, scalars,
                                 start, tool_env, val_records, write_config)
from robustvit_mm.engine.checkpoint_guard_hook import resolve_resume_file


def _checkpoint(path):
    """A small but complete torch.save file."""
    torch.save({'state_dict': {'w': torch.ones(2)}}, str(path))


def best_files(work_dir):
    return sorted(f for f in os.listdir(work_dir) if f.startswith('best_'))


def assert_same_state(a, b, what):
    assert sorted(a) == sorted(b), what
    for key in a:
        assert torch.equal(a[key], b[key]), (what, key, (a[key] - b[key]).abs().max().item())


CRASH_MODULE = '''
import os
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class CrashAfterValEpoch(Hook):
    """Kill the process (no clean-up, like a pre-empted job) once epoch `epoch` is validated."""
    priority = 'LOWEST'  # after the checkpoint hook has saved the epoch and the best checkpoint

    def __init__(self, epoch):
        self.epoch = epoch

    def after_val_epoch(self, runner, metrics=None):
        if runner.epoch == self.epoch:
            print('CrashAfterValEpoch: simulated crash', flush=True)
            os._exit(3)
'''

CRASH_CONFIG = '''
custom_imports = dict(imports=['robustvit_mm', 'crash_after_val_epoch'], allow_failed_imports=False)
custom_hooks = [dict(type='GAERelevanceHook', interval=2, num_samples=2),
                dict(type='CrashAfterValEpoch', epoch=1)]
'''


@pytest.mark.slow
def test_resume_and_copied_work_dir_end_like_the_uninterrupted_run(tmp_path):
    tree = make_tree(tmp_path / 'data')
    (tmp_path / 'crash_after_val_epoch.py').write_text(CRASH_MODULE)
    pretrained = tmp_path / 'pretrained.pth'
    config = write_config(tmp_path / 'tiny_2e.py', tree, pretrained, epochs=2)
    crashing = write_config(tmp_path / 'tiny_2e_crash.py', tree, pretrained, epochs=2,
                            extra=CRASH_CONFIG)
    save_pretrained(config, pretrained)
    straight, interrupted, copied = (str(tmp_path / d) for d in ('straight', 'interrupted', 'copy'))

    # The uninterrupted run, and the same run killed after epoch 1, side by side.
    a = start('train.py', config, '--work-dir', straight)
    b = start('train.py', crashing, '--work-dir', interrupted,
              env=tool_env(PYTHONPATH=str(tmp_path)))
    finish(a)
    assert 'simulated crash' in finish(b, expect_ok=False)
    assert not osp.exists(osp.join(interrupted, 'epoch_2.pth'))

    shutil.copytree(interrupted, copied)
    with open(osp.join(copied, 'last_checkpoint')) as f:
        assert f.read().strip() == osp.join(interrupted, 'epoch_1.pth')  # absolute, the original

    # The copy resumes first, while the original still holds epoch_1.pth and its best checkpoint:
    # it must read only its own files and delete nothing in the original directory.
    before = {f: os.stat(osp.join(interrupted, f)).st_mtime_ns for f in os.listdir(interrupted)}
    out = run('train.py', config, '--work-dir', copied, '--resume')
    assert f"resuming from this work dir's own {osp.join(copied, 'epoch_1.pth')}" in out, \
        out[-3000:]
    assert f"Load checkpoint from {osp.join(copied, 'epoch_1.pth')}" in out
    assert 'resumed epoch: 1' in out.lower()
    assert {f: os.stat(osp.join(interrupted, f)).st_mtime_ns
            for f in os.listdir(interrupted)} == before

    out = run('train.py', config, '--work-dir', interrupted, '--resume')
    assert 'resumed epoch: 1' in out.lower(), out[-3000:]
    assert not osp.exists(osp.join(interrupted, 'epoch_1.pth'))  # max_keep_ckpts=1 removed it

    final = load_state(osp.join(straight, 'epoch_2.pth'))
    lrs = [r['lr'] for r in scalars(straight) if 'loss' in r]
    assert lrs == [1e-3] * 3 + [pytest.approx(0.85e-3)] * 3  # StepLR(step_size=1) is exercised
    for work_dir in (interrupted, copied):
        other = load_state(osp.join(work_dir, 'epoch_2.pth'))
        assert_same_state(final['state_dict'], other['state_dict'], work_dir)
        assert other['meta']['epoch'] == 2 and other['meta']['iter'] == final['meta']['iter'] == 6
        assert other['param_schedulers'] == final['param_schedulers']
        assert other['optimizer']['param_groups'] == final['optimizer']['param_groups']
        for idx, state in final['optimizer']['state'].items():
            for name, value in state.items():
                assert torch.equal(value, other['optimizer']['state'][idx][name]), (idx, name)
        # The same best checkpoint: name, score, weights.
        assert best_files(work_dir) == best_files(straight), (best_files(work_dir), work_dir)
        [best] = best_files(straight)
        assert_same_state(load_state(osp.join(straight, best))['state_dict'],
                          load_state(osp.join(work_dir, best))['state_dict'], best)
        assert final['message_hub']['runtime_info']['best_score'] == \
            other['message_hub']['runtime_info']['best_score']
        # The training losses of epoch 2 and the validation after it are the same numbers.
        mine = [r for r in scalars(work_dir) if 'loss' in r][-3:]
        theirs = [r for r in scalars(straight) if 'loss' in r][-3:]
        for x, y in zip(mine, theirs):
            assert (x['lr'], x['loss'], x['step']) == (y['lr'], y['loss'], y['step'])
        assert val_records(straight)[-1]['relevance/loss'] == val_records(work_dir)[-1][
            'relevance/loss']

    # Each directory now points at its own latest checkpoint.
    for work_dir in (interrupted, copied):
        with open(osp.join(work_dir, 'last_checkpoint')) as f:
            assert f.read().strip() == osp.join(work_dir, 'epoch_2.pth')


def test_resume_in_a_work_dir_without_checkpoint_is_an_error(tmp_path):
    """--resume drops load_from in the stock train.py: resuming nothing would train from random
    weights. Refused with a message naming the work dir."""
    with pytest.raises(FileNotFoundError, match=r'no .*last_checkpoint.*RANDOM weights'):
        resolve_resume_file(str(tmp_path))


def test_copied_work_dir_prefers_its_own_file(tmp_path):
    original, copy = tmp_path / 'orig', tmp_path / 'copy'
    original.mkdir()
    _checkpoint(original / 'epoch_3.pth')
    (original / 'last_checkpoint').write_text(str(original / 'epoch_3.pth'))
    shutil.copytree(original, copy)
    path, note = resolve_resume_file(str(copy))
    assert path == str(copy / 'epoch_3.pth') and 'outside this work dir' in note
    # The original still resumes from its own file, with no note.
    assert resolve_resume_file(str(original)) == (str(original / 'epoch_3.pth'), None)


def test_checkpoints_kept_outside_the_work_dir_still_resume(tmp_path):
    """CheckpointHook(out_dir=...) keeps checkpoints elsewhere: last_checkpoint is then honoured."""
    work, out = tmp_path / 'work', tmp_path / 'bucket'
    work.mkdir(), out.mkdir()
    _checkpoint(out / 'epoch_2.pth')
    (work / 'last_checkpoint').write_text(str(out / 'epoch_2.pth'))
    assert resolve_resume_file(str(work)) == (str(out / 'epoch_2.pth'), None)


def test_last_checkpoint_pointing_nowhere_names_both_paths(tmp_path):
    (tmp_path / 'last_checkpoint').write_text('/gone/work/epoch_4.pth')
    with pytest.raises(FileNotFoundError, match=r'/gone/work/epoch_4\.pth.*--resume PATH'):
        resolve_resume_file(str(tmp_path))


def test_resuming_another_directorys_checkpoint_never_deletes_its_files(tmp_path):
    """`--resume OTHER/epoch_1.pth --work-dir NEW`: the best/last paths recorded in the checkpoint
    point into OTHER; CheckpointHook would delete OTHER's best checkpoint once NEW finds a better one.
    Paths with a copy in NEW are pointed there; the others are dropped (their file is left alone)."""
    import types
    from robustvit_mm.engine.checkpoint_guard_hook import CheckpointGuardHook
    other, new = tmp_path / 'other', tmp_path / 'new'
    other.mkdir(), new.mkdir()
    (new / 'epoch_1.pth').write_bytes(b'x')
    model = torch.nn.Linear(2, 2)
    info = dict(best_ckpt=str(other / 'best_relevance_loss_epoch_1.pth'), best_score=0.3,
                last_ckpt=str(other / 'epoch_1.pth'), keep_ckpt_ids=[1])
    checkpoint = dict(state_dict=model.state_dict(), message_hub=dict(runtime_info=info))
    runner = types.SimpleNamespace(model=model, _load_from=str(other / 'epoch_1.pth'), _resume=True,
                                   work_dir=str(new), hooks=[])
    hook = CheckpointGuardHook()
    hook.before_run(runner)
    hook.after_load_checkpoint(runner, checkpoint)
    assert info == dict(best_score=0.3, last_ckpt=str(new / 'epoch_1.pth'), keep_ckpt_ids=[1])
    # With CheckpointHook(out_dir=...) the checkpoints legitimately live elsewhere: untouched.
    info2 = dict(best_ckpt=str(other / 'best.pth'))
    runner.hooks = [types.SimpleNamespace(out_dir=str(other), save_best='relevance/loss')]
    hook.after_load_checkpoint(runner, dict(state_dict=model.state_dict(),
                                            message_hub=dict(runtime_info=info2)))
    assert info2 == dict(best_ckpt=str(other / 'best.pth'))


def test_a_checkpoint_cut_short_is_refused_naming_the_complete_ones(tmp_path):
    _checkpoint(tmp_path / 'epoch_1.pth')
    _checkpoint(tmp_path / 'epoch_2.pth')
    data = (tmp_path / 'epoch_2.pth').read_bytes()
    (tmp_path / 'epoch_2.pth').write_bytes(data[:len(data) // 2])    # killed while written
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_2.pth'))
    with pytest.raises(ValueError, match=r'epoch_2\.pth is not a complete checkpoint .*: '
                                         r'epoch_1\.pth; resume from one with --resume PATH'):
        resolve_resume_file(str(tmp_path))
    (tmp_path / 'last_checkpoint').write_text('')                   # killed while it was written
    with pytest.raises(ValueError, match=r'last_checkpoint is empty .*: epoch_1\.pth'):
        resolve_resume_file(str(tmp_path))
    # --resume PATH of a file cut short: refused before anything is loaded.
    import types
    from robustvit_mm.engine.checkpoint_guard_hook import CheckpointGuardHook
    runner = types.SimpleNamespace(_load_from=str(tmp_path / 'epoch_2.pth'), _resume=True,
                                   work_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r'epoch_2\.pth is not a complete checkpoint'):
        CheckpointGuardHook().before_run(runner)


def test_checkpoint_writes_are_atomic_and_the_old_file_goes_only_after(tmp_path):
    """What LatestBestCheckpointHook wraps mmengine's saving in."""
    from mmengine.fileio.backends import LocalBackend
    from robustvit_mm.engine.checkpoint_hook import crash_safe_writes
    backend = LocalBackend()
    old, new = tmp_path / 'epoch_1.pth', tmp_path / 'epoch_2.pth'
    _checkpoint(old)

    class Killed(BaseException):
        pass

    def killed(src, dst):
        raise Killed                                   # the data is written, not yet renamed

    import robustvit_mm.utils.fileio as fileio
    with pytest.raises(Killed):
        with crash_safe_writes(backend):
            backend.remove(str(old))                   # mmengine removes the oldest first...
            assert old.exists()                        # ...held back
            real, fileio.os.replace = fileio.os.replace, killed
            try:
                backend.put(b'new checkpoint', str(new))
            finally:
                fileio.os.replace = real
    assert old.exists() and not new.exists()           # the complete old one is still there
    assert [p.name for p in tmp_path.iterdir()] == ['epoch_1.pth']
    with crash_safe_writes(backend):
        backend.remove(str(old))
        backend.put(b'new checkpoint', str(new))
        backend.remove(str(new))                       # never the file just written
    assert not old.exists() and new.read_bytes() == b'new checkpoint'
    assert backend.remove.__func__ is LocalBackend.remove   # restored


FAULT_MODULE = '''
import os
import resource
import signal
import sys


def _fault_when_epoch_2_is_written(event, args):
    """As this process opens epoch_2.pth (or its temporary file) for writing: kill -9 it, or limit
    its file size so that the write fails part-way (EFBIG), as FAULT says."""
    if event == 'open' and args and 'epoch_2.pth' in str(args[0]) and (
            'w' in str(args[1]) or args[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)):
        print('FAULT', os.environ['FAULT'], 'while writing', args[0], flush=True)
        if os.environ['FAULT'] == 'kill':
            os.kill(os.getpid(), signal.SIGKILL)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


sys.addaudithook(_fault_when_epoch_2_is_written)
'''


@pytest.mark.slow
@pytest.mark.parametrize('fault', ['kill', 'fsize'])
def test_a_checkpoint_write_killed_or_failing_part_way_then_resume_ends_like_the_uninterrupted_run(
        tmp_path, fault):
    tree = make_tree(tmp_path / 'data')
    (tmp_path / 'fault_on_epoch_2_write.py').write_text(FAULT_MODULE)
    pretrained = tmp_path / 'pretrained.pth'
    config = write_config(tmp_path / 'tiny_2e.py', tree, pretrained, epochs=2)
    faulty_config = write_config(
        tmp_path / 'tiny_2e_fault.py', tree, pretrained, epochs=2,
        extra="custom_imports = dict(imports=['robustvit_mm', 'fault_on_epoch_2_write'], "
              "allow_failed_imports=False)\n")
    save_pretrained(config, pretrained)
    straight, faulty = str(tmp_path / 'straight'), str(tmp_path / 'faulty')
    a = start('train.py', config, '--work-dir', straight)
    b = start('train.py', faulty_config, '--work-dir', faulty,
              env=tool_env(PYTHONPATH=str(tmp_path), FAULT=fault))
    finish(a)
    out = finish(b, expect_ok=False)
    assert f'FAULT {fault} while writing' in out, out[-3000:]
    if fault == 'fsize':
        assert 'File too large' in out, out[-3000:]
    # Nothing that looks finished: no epoch_2.pth; epoch_1.pth (max_keep_ckpts=1) still there.
    assert not osp.exists(osp.join(faulty, 'epoch_2.pth'))
    assert osp.isfile(osp.join(faulty, 'epoch_1.pth'))
    out = run('train.py', config, '--work-dir', faulty, '--resume')
    assert 'resumed epoch: 1' in out.lower(), out[-3000:]
    assert_same_state(load_state(osp.join(straight, 'epoch_2.pth'))['state_dict'],
                      load_state(osp.join(faulty, 'epoch_2.pth'))['state_dict'], 'epoch 2')
    assert not osp.exists(osp.join(faulty, 'epoch_1.pth'))     # removed once epoch 2 was complete


def test_crash_safe_writes_nest(tmp_path):
    """mmengine's best-checkpoint save calls the latest-checkpoint save inside it."""
    from mmengine.fileio.backends import LocalBackend
    from robustvit_mm.engine.checkpoint_hook import crash_safe_writes
    backend = LocalBackend()
    _checkpoint(tmp_path / 'old.pth')
    with crash_safe_writes(backend):
        with crash_safe_writes(backend):
            backend.remove(str(tmp_path / 'old.pth'))
            backend.put(b'1', str(tmp_path / 'a.pth'))
        assert (tmp_path / 'old.pth').exists()
    assert not (tmp_path / 'old.pth').exists() and (tmp_path / 'a.pth').read_bytes() == b'1'
    assert 'remove' not in vars(backend) and LocalBackend.put.__name__ == 'put'
