"""Distributed training computes what one process computes.

mmpretrain's STOCK ``dist_train.sh`` (torch.distributed.launch -> ``train.py --launcher pytorch``)
with 2 CPU processes x batch 4 over gloo, against the stock ``train.py`` with 1 process x batch 8,
on the paper config (tiny model, deterministic pipeline, ``DefaultSampler(shuffle=False)``, so rank
r's batch i holds samples 8i + r, 8i + r + 2, ...: the two ranks together see batch i of the single
process). Losses are means, DDP averages gradients, so the weights must agree.

The one exception is exact and explained: the attention KEY bias (the middle third of
``qkv.bias``) has a mathematically zero gradient (softmax is invariant to adding q.b_k to every
logit of a row), so its gradient is float noise, and AdamW's step g / (sqrt(v) + eps) turns noise of
any size into +-lr. It moves by noise in every run, single-process too, and changes no output: the
test checks that the two final models give the same logits.
"""
import os
import os.path as osp
import subprocess
import sys
import textwrap

import pytest
import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS

import robustvit_mm  # noqa: F401
from stock_run_helpers import (finish, free_port, load_state, make_tree, save_pretrained, start,
                                 tool_env, val_records, write_config)
from robustvit_mm.compat import dist_cpu

GLOO = ['env_cfg.dist_cfg.backend=gloo', 'model_wrapper_cfg.device_ids=None']


def key_bias_slice(key, embed_dims=48):
    """The key-bias part of a ``qkv.bias`` (zero true gradient), else None."""
    if key.endswith('attn.qkv.bias'):
        return slice(embed_dims, 2 * embed_dims)
    return None


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process(tmp_path):
    tree = make_tree(tmp_path / 'data')
    config = write_config(tmp_path / 'tiny_ddp.py', tree, tmp_path / 'pretrained.pth', epochs=1,
                          batch_size=8)
    save_pretrained(config, tmp_path / 'pretrained.pth')
    single_dir, ddp_dir = str(tmp_path / 'single'), str(tmp_path / 'ddp')

    # Both at once (2 cores); --auto-scale-lr as the README's multi-GPU command: 2 x 4 = 8 =
    # base_batch_size, so the lr is the same in both runs.
    single = start('train.py', config, '--work-dir', single_dir, '--auto-scale-lr')
    ddp = start(None, config, '2', '--work-dir', ddp_dir, '--auto-scale-lr', '--cfg-options',
                'train_dataloader.batch_size=4', 'val_dataloader.batch_size=1', *GLOO,
                launcher='dist_train.sh', env=tool_env(PORT=str(free_port())))
    out_single, out_ddp = finish(single), finish(ddp)
    assert 'Distributed training is not used' in out_single
    assert 'Distributed training is not used' not in out_ddp
    assert out_ddp.count('Epoch(train) [1][3/3]') == 1, out_ddp[-3000:]  # 3 iterations, rank 0 logs

    a = load_state(osp.join(single_dir, 'epoch_1.pth'))['state_dict']
    b = load_state(osp.join(ddp_dir, 'epoch_1.pth'))['state_dict']
    p = load_state(str(tmp_path / 'pretrained.pth'))['state_dict']
    assert sorted(a) == sorted(b)  # no 'module.' prefix: the wrapper is not saved
    moved = 0.0
    for key in a:
        diff = (a[key] - b[key]).abs()
        keys = key_bias_slice(key)
        if keys is not None:
            diff[keys] = 0
        assert diff.max() <= 1e-5, (key, diff.max().item())
        moved = max(moved, (a[key] - p[key]).abs().max().item())
    assert moved > 1e-3  # the comparison is not vacuous: the weights moved by ~3 lr

    # Same function: logits of the two trained models agree (the key bias changes nothing).
    cfg = Config.fromfile(config)
    models = []
    for state in (a, b):
        model = MODELS.build(cfg.model)
        model.load_state_dict(state)
        models.append(model.eval())
    inputs = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        la, lb = (m(inputs, mode='tensor') for m in models)
    assert torch.allclose(la, lb, rtol=1e-5, atol=1e-5), (la - lb).abs().max()

    # The validation loss (the checkpoint-selection metric) is the same: the 3 held-out samples are
    # split 2 + 1 (+1 padding duplicate, which mmengine's collect_results drops) over the ranks.
    va, vb = val_records(single_dir), val_records(ddp_dir)
    assert len(va) == len(vb) == 1
    for key in ('relevance/loss', 'relevance/loss_background', 'relevance/loss_foreground',
                'relevance/loss_cls', 'relevance/relevance_iou', 'accuracy/top1'):
        assert abs(va[0][key] - vb[0][key]) <= 1e-5, (key, va[0][key], vb[0][key])
    # Same best checkpoint.
    assert sorted(f for f in os.listdir(single_dir) if f.startswith('best_')) == \
        sorted(f for f in os.listdir(ddp_dir) if f.startswith('best_'))


def test_nccl_without_gpu_names_the_switch(monkeypatch):
    """What `--launcher pytorch` does with backend='nccl' on a machine where torch sees no GPU."""
    monkeypatch.setattr(dist_cpu, 'has_accelerator', lambda: False)
    monkeypatch.setenv('RANK', '0')
    monkeypatch.setenv('LOCAL_RANK', '0')
    monkeypatch.setenv('WORLD_SIZE', '1')
    from mmengine.dist import utils as dist_utils
    with pytest.raises(RuntimeError, match=r"env_cfg\.dist_cfg\.backend='nccl'.*backend=gloo "
                                           r'model_wrapper_cfg\.device_ids=None'):
        dist_utils._init_dist_pytorch('nccl')


def test_gloo_initialises_without_touching_cuda(monkeypatch):
    monkeypatch.setattr(dist_cpu, 'has_accelerator', lambda: False)
    monkeypatch.setattr(torch.cuda, 'set_device', lambda *a: pytest.fail('set_device called'))
    for key, value in dict(RANK='0', LOCAL_RANK='0', WORLD_SIZE='1', MASTER_ADDR='127.0.0.1',
                           MASTER_PORT=str(free_port())).items():
        monkeypatch.setenv(key, value)
    from mmengine.dist import init_dist, is_distributed
    import torch.distributed as torch_dist
    try:
        init_dist('pytorch', backend='gloo')
        assert is_distributed() and torch_dist.get_backend() == 'gloo'
    finally:
        if torch_dist.is_initialized():
            torch_dist.destroy_process_group()


PROBE = """
import atexit, ctypes, os, sys, time
import torch
import torch.distributed as torch_dist
import robustvit_mm  # noqa: F401
from mmengine.dist import init_dist
from robustvit_mm.compat import dist_cpu

# A C++ static destructor that aborts, as one does when it meets a live gloo thread. Registered
# before the group exists, like every library static: exit() would run it after our handler.
libc = ctypes.CDLL(None)
libc.__cxa_atexit.argtypes = [ctypes.c_void_p] * 3
libc.__cxa_atexit(ctypes.cast(libc.abort, ctypes.c_void_p), None, None)


def threads():
    return sorted(open(f'/proc/self/task/{t}/comm').read().strip()
                  for t in os.listdir('/proc/self/task'))


# Registered before the group exists: atexit (last in, first out) runs it after our handler.
atexit.register(lambda: print('at exit:', torch_dist.is_initialized(), threads(), flush=True))
dist_cpu.has_accelerator = lambda: False
os.environ.update(RANK='0', LOCAL_RANK='0', WORLD_SIZE='1', MASTER_ADDR='127.0.0.1',
                  MASTER_PORT=sys.argv[2])
init_dist('pytorch', backend='gloo')
torch_dist.all_reduce(torch.ones(1))
for _ in range(100):  # the group's threads name themselves once they run
    if 'pt_gloo_runloop' in threads() and 'gloo_tcp_loop' in threads():
        break
    time.sleep(0.1)
cycle = [torch_dist.distributed_c10d._get_default_group()]
cycle.append(cycle)  # the group held in a reference cycle, as the Runner holds it through DDP
del cycle
print('initialised:', torch_dist.is_initialized(), threads(), flush=True)
if sys.argv[1] == 'exit':
    sys.exit(3)
if sys.argv[1] == 'raise':
    raise ValueError('rank crashed')
"""


@pytest.mark.parametrize('ending,status', [('return', 0), ('exit', 3), ('raise', 1)])
def test_exit_skips_static_destructors_and_keeps_the_status(tmp_path, ending, status):
    """A gloo group left alive at exit can abort the process in C++ static teardown (SIGABRT, seen
    in CI with dist_train.sh). The teardown at exit destroys the group, frees it (its gloo threads
    joined) and leaves before any static destructor runs, with the process's own exit status: the
    aborting 'destructor' the probe registers never runs, and a crashed rank still fails."""
    script = tmp_path / 'probe.py'
    script.write_text(PROBE)
    out = subprocess.run([sys.executable, str(script), ending, str(free_port())],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == status, (out.returncode, out.stdout, out.stderr[-3000:])
    assert 'initialised: True' in out.stdout and 'pt_gloo_runloop' in out.stdout, out.stdout
    at_exit = [line for line in out.stdout.splitlines() if line.startswith('at exit:')]
    assert len(at_exit) == 1 and at_exit[0].startswith('at exit: False'), out.stdout
    assert 'gloo' not in at_exit[0], at_exit  # the group's native threads were joined in time
    if ending == 'raise':
        assert 'ValueError: rank crashed' in out.stderr


def test_wrapper_is_installed_once():
    from mmengine.dist import utils as dist_utils
    wrapped = dist_utils._init_dist_pytorch
    dist_cpu.enable_cpu_distributed()
    assert dist_utils._init_dist_pytorch is wrapped and wrapped._robustvit_cpu_aware
