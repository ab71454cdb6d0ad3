"""The converter's library code: every family's timm state dict loads STRICTLY into the mmpretrain
model of its config (every tensor used, none left over) and gives timm's logits.

The timm models are built tiny with random weights (layer scales and gammas random too, so a wrong
mapping shows); the mmpretrain models are the configs' backbones with a tiny ``arch``.
"""
import os
import os.path as osp
import subprocess
import sys

import pytest
import timm
import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS

import robustvit_mm  # noqa: F401  (registers)
from robustvit_mm.models.timm_weights import (convert_timm_checkpoint, detect_family,
                                              load_timm_state_dict)
from stock_run_helpers import REPO

CONFIGS = osp.join(REPO, 'configs', 'robustvit')
DIMS, DEPTH, HEADS, CLASSES, PATCH = 48, 2, 3, 5, 8
TINY = dict(patch_size=PATCH, embed_dim=DIMS, depth=DEPTH, num_heads=HEADS, num_classes=CLASSES)
REF_GRID = 6  # EVA-02's RoPE reference grid for the tiny models (16 for the real ones)

# family: (timm constructor, extra timm kwargs, our config, mmpretrain feedforward channels)
FAMILIES = {
    'deit': ('deit_base_patch16_224', {}, 'deit-base-p16_robustvit_imagenet-s.py', 4 * DIMS),
    'deit3': ('deit3_base_patch16_224', {}, 'deit3-base-p16_robustvit_imagenet-s.py', 4 * DIMS),
    'dinov2': ('vit_base_patch14_dinov2', {}, 'dinov2-base-p14_robustvit_imagenet-s.py', 4 * DIMS),
    'beitv2': ('beitv2_base_patch16_224', {}, 'beitv2-base-p16_robustvit_imagenet-s.py', 4 * DIMS),
    'eva02': ('eva02_base_patch14_448', dict(ref_feat_shape=(REF_GRID, REF_GRID)),
              'eva02-base-p14_robustvit_imagenet-s.py', int(DIMS * 4 * 2 / 3)),
}
EVA02_OPTIONS = dict(num_heads=HEADS, rope_ref_grid=REF_GRID)


def timm_model(family, img_size, seed=0):
    name, extra, _, _ = FAMILIES[family]
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, img_size=img_size, **TINY, **extra).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    return model


def our_model(family, img_size):
    """The family's config model (RelevanceGuidedClassifier), tiny."""
    _, _, config, ffn = FAMILIES[family]
    cfg = Config.fromfile(osp.join(CONFIGS, config)).model
    cfg.backbone.update(arch=dict(embed_dims=DIMS, num_layers=DEPTH, num_heads=HEADS,
                                  feedforward_channels=ffn), img_size=img_size, patch_size=PATCH)
    cfg.head.update(num_classes=CLASSES, in_channels=DIMS)
    return MODELS.build(cfg).eval()


def convert(tmp_path, state, family, **options):
    torch.save(state, tmp_path / 'timm.pth')
    if family == 'eva02':
        options = {**EVA02_OPTIONS, **options}
    info = convert_timm_checkpoint(tmp_path / 'timm.pth', tmp_path / 'converted.pth', **options)
    return info, torch.load(tmp_path / 'converted.pth', weights_only=True)['state_dict']


@pytest.mark.parametrize('family', list(FAMILIES))
def test_every_family_loads_strictly_with_timms_logits(tmp_path, family):
    source = timm_model(family, 32)
    info, state = convert(tmp_path, source.state_dict(), family)
    assert info['family'] == {'beitv2': 'beit', 'eva02': 'eva02'}.get(family, 'vit')
    model = our_model(family, 32)
    model.load_state_dict(state, strict=True)  # every tensor used, none left over, same shapes
    assert set(state) == set(model.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ours, theirs = model(x, mode='tensor'), source(x)
    assert theirs.abs().max() > 0.1  # a non-trivial function
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('family', ['deit3', 'dinov2', 'eva02'])
def test_img_size_gives_timms_own_model_of_that_size(tmp_path, family):
    # A 48-px checkpoint (6x6 patches) for a 32-px config (4x4). The oracle is timm itself: its
    # 32-px model loading the 48-px weights through its own checkpoint filter (position embeddings
    # resampled bicubic with antialiasing; DeiT3's have no class position; EVA-02's RoPE tables
    # made for the new grid).
    from timm.models import eva, vision_transformer
    source = timm_model(family, 48)
    _, state = convert(tmp_path, source.state_dict(), family, img_size=32)
    model = our_model(family, 32)
    model.load_state_dict(state, strict=True)
    assert state['backbone.pos_embed'].shape[1] == 1 + 16
    timm_32 = timm_model(family, 32, seed=1)
    checkpoint_filter = (eva if family == 'eva02' else vision_transformer).checkpoint_filter_fn
    timm_32.load_state_dict(checkpoint_filter(source.state_dict(), timm_32), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x, mode='tensor'), timm_32(x), atol=1e-5, rtol=1e-5)


def test_beit_refuses_another_size(tmp_path):
    torch.save(timm_model('beitv2', 32).state_dict(), tmp_path / 'beit.pth')
    with pytest.raises(ValueError, match=r'BEiT checkpoints convert at their own input size '
                       r'\(32 px\), not img_size=48'):
        convert_timm_checkpoint(tmp_path / 'beit.pth', tmp_path / 'out.pth', img_size=48)
    assert not (tmp_path / 'out.pth').exists()


def test_sizes_that_do_not_fit_are_named(tmp_path):
    state = timm_model('dinov2', 32).state_dict()
    torch.save(state, tmp_path / 'a.pth')
    with pytest.raises(ValueError, match='img_size=30 is not a multiple of the patch size 8'):
        convert_timm_checkpoint(tmp_path / 'a.pth', tmp_path / 'out.pth', img_size=30)
    state['pos_embed'] = torch.zeros(1, 19, DIMS)  # neither 1 + g^2 nor g^2 tokens
    torch.save(state, tmp_path / 'b.pth')
    with pytest.raises(ValueError, match='pos_embed has 19 tokens: not a square patch grid'):
        convert_timm_checkpoint(tmp_path / 'b.pth', tmp_path / 'out.pth')
    assert not (tmp_path / 'out.pth').exists()


def test_family_is_read_from_the_names():
    assert detect_family(timm_model('eva02', 32).state_dict()) == 'eva02'
    assert detect_family(timm_model('beitv2', 32).state_dict()) == 'beit'
    assert detect_family(timm_model('deit3', 32).state_dict()) == 'vit'


def test_nested_and_safetensors_files_read_the_same(tmp_path):
    from safetensors.torch import save_file
    state = timm_model('deit3', 32).state_dict()
    torch.save({'model': state}, tmp_path / 'nested.pth')
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / 'w.safetensors'))
    for path in ('nested.pth', 'w.safetensors'):
        loaded = load_timm_state_dict(tmp_path / path)
        assert loaded.keys() == state.keys()
        assert all(torch.equal(loaded[k], state[k]) for k in state)


# ---------------------------------------------------------------- writing the file
def test_refuses_to_overwrite_its_source(tmp_path):
    src = tmp_path / 'a.pth'
    torch.save(timm_model('deit', 32).state_dict(), src)
    before = src.read_bytes()
    os.symlink(src, tmp_path / 'link.pth')
    for dst in (src, tmp_path / '.' / 'a.pth', tmp_path / 'link.pth'):
        with pytest.raises(ValueError) as error:
            convert_timm_checkpoint(src, dst)
        assert str(dst) in str(error.value) and str(src) in str(error.value)
    assert src.read_bytes() == before


def test_the_command_line_refuses_too_and_exits_non_zero(tmp_path):
    src = tmp_path / 'a.pth'
    torch.save(timm_model('deit', 32).state_dict(), src)
    before = src.read_bytes()
    proc = subprocess.run([sys.executable, osp.join(REPO, 'tools', 'convert_timm_weights.py'),
                           str(src), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert f"destination '{src}' is the source checkpoint '{src}'" in proc.stderr, proc.stderr
    assert 'Traceback' not in proc.stderr
    assert src.read_bytes() == before


def test_writes_atomically(tmp_path, monkeypatch):
    src, dst = tmp_path / 'timm.pth', tmp_path / 'out.pth'
    torch.save(timm_model('deit3', 32).state_dict(), src)
    dst.write_bytes(b'previous converted weights')
    real_save = torch.save

    def save_then_fail(obj, f, *args, **kwargs):  # the disk fills up half way
        real_save(obj, f, *args, **kwargs)
        raise OSError('No space left on device')

    monkeypatch.setattr(torch, 'save', save_then_fail)
    with pytest.raises(OSError, match='No space left'):
        convert_timm_checkpoint(src, dst)
    assert dst.read_bytes() == b'previous converted weights'
    assert sorted(os.listdir(tmp_path)) == ['out.pth', 'timm.pth']  # no temporary file left
    monkeypatch.setattr(torch, 'save', real_save)
    convert_timm_checkpoint(src, tmp_path / 'new' / 'out.pth')  # creates the folder
    assert 'backbone.layers.0.attn.gamma1.weight' in torch.load(
        tmp_path / 'new' / 'out.pth', weights_only=True)['state_dict']


# ---------------------------------------------------------------- files that are not timm ViTs
def run_converter(*args):
    return subprocess.run([sys.executable, osp.join(REPO, 'tools', 'convert_timm_weights.py'),
                           *map(str, args)], capture_output=True, text=True, timeout=300)


def test_an_already_converted_file_is_named_as_such(tmp_path):
    torch.save(timm_model('deit', 32).state_dict(), tmp_path / 'timm.pth')
    convert_timm_checkpoint(tmp_path / 'timm.pth', tmp_path / 'converted.pth')
    for target in ('mmpretrain', 'timm'):
        with pytest.raises(ValueError, match=r'converted.pth: the tensors have mmpretrain names '
                                             r'\(backbone\..*converted \(or trained with this '
                                             r'package\) already.*load_from as it is') as error:
            convert_timm_checkpoint(tmp_path / 'converted.pth', tmp_path / 'again.pth',
                                    target=target)
        assert '--target timm' not in str(error.value)
    assert not (tmp_path / 'again.pth').exists()


def test_a_resnet_is_refused_for_both_targets_naming_the_cause(tmp_path):
    resnet = timm.create_model('resnet18', pretrained=False, num_classes=CLASSES)
    torch.save(resnet.state_dict(), tmp_path / 'resnet.pth')
    for target in ('mmpretrain', 'timm'):
        proc = run_converter(tmp_path / 'resnet.pth', tmp_path / 'out.pth', '--target', target)
        assert proc.returncode == 2, proc.stderr
        assert 'not a timm Vision Transformer checkpoint' in proc.stderr
        assert 'conv1.weight' in proc.stderr and 'Traceback' not in proc.stderr
        assert 'no mmpretrain equivalent' not in proc.stderr
    assert not (tmp_path / 'out.pth').exists()


def test_weights_converted_without_img_size_are_refused_naming_img_size(tmp_path):
    from robustvit_mm.engine.checkpoint_check import load_checked_checkpoint
    torch.save(timm_model('eva02', 48).state_dict(), tmp_path / 'eva02_48px.pth')
    convert_timm_checkpoint(tmp_path / 'eva02_48px.pth', tmp_path / 'converted.pth',
                            **EVA02_OPTIONS)  # no img_size: the 48-px grid is kept
    model = our_model('eva02', 32)
    with pytest.raises(ValueError, match=r'backbone\.pos_embed is \(1, 37, 48\) in the file but '
                                         r'\(1, 17, 48\).*converted without --img-size.*'
                                         r'tools/convert_timm_weights.py --img-size 32'):
        load_checked_checkpoint(model, str(tmp_path / 'converted.pth'))
    convert_timm_checkpoint(tmp_path / 'eva02_48px.pth', tmp_path / 'converted.pth',
                            img_size=32, **EVA02_OPTIONS)  # the fix the message names
    load_checked_checkpoint(model, str(tmp_path / 'converted.pth'))


KILL_DURING_WRITE = '''
import os, signal, sys, torch
from robustvit_mm.models import timm_weights
real_save = torch.save
def save_then_die(obj, f, *args, **kwargs):  # kill -9 with half the bytes written
    real_save(obj, f, *args, **kwargs)
    f.truncate(f.tell() // 2)
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
torch.save = save_then_die
timm_weights.convert_timm_checkpoint(sys.argv[1], sys.argv[2])
'''


def test_kill_9_during_the_write_leaves_no_finished_looking_file_and_the_rerun_converts(tmp_path):
    src, dst = tmp_path / 'timm.pth', tmp_path / 'out.pth'
    torch.save(timm_model('deit3', 32).state_dict(), src)
    proc = subprocess.run([sys.executable, '-c', KILL_DURING_WRITE, str(src), str(dst)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == -9, proc.stderr
    assert not dst.exists()  # only a hidden temporary file remains
    assert [p for p in os.listdir(tmp_path) if not p.startswith('.')] == ['timm.pth']
    assert run_converter(src, dst).returncode == 0  # the rerun
    convert_timm_checkpoint(src, tmp_path / 'uninterrupted.pth')
    rerun = torch.load(dst, weights_only=True)['state_dict']
    uninterrupted = torch.load(tmp_path / 'uninterrupted.pth', weights_only=True)['state_dict']
    assert rerun.keys() == uninterrupted.keys()
    assert all(torch.equal(rerun[k], uninterrupted[k]) for k in rerun)


FILE_SIZE_LIMIT = '''
import resource, runpy, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
sys.argv = [sys.argv[2]] + sys.argv[3:]
runpy.run_path(sys.argv[0], run_name='__main__')
'''


def test_a_write_cut_by_a_file_size_limit_keeps_the_previous_file(tmp_path):
    src, dst = tmp_path / 'timm.pth', tmp_path / 'out.pth'
    torch.save(timm_model('deit3', 32).state_dict(), src)
    dst.write_bytes(b'previous converted weights')
    limit = src.stat().st_size // 2  # the source reads fine; the output cannot be written whole
    proc = subprocess.run([sys.executable, '-c', FILE_SIZE_LIMIT, str(limit),
                           osp.join(REPO, 'tools', 'convert_timm_weights.py'), str(src), str(dst)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert f'could not write {dst}' in proc.stderr and 'file-size limit' in proc.stderr
    assert 'Traceback' not in proc.stderr
    assert dst.read_bytes() == b'previous converted weights'
    assert sorted(os.listdir(tmp_path)) == ['out.pth', 'timm.pth']  # no temporary file left
