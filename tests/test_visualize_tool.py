"""tools/visualize_relevance.py end to end: tiny config + checkpoint, 2 JPEGs and 1 corrupt file."""
import importlib.util
import os
import os.path as osp
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import robustvit_mm  # noqa: F401
from robustvit_mm.relevance import gae_relevance

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOL = osp.join(REPO, 'tools', 'visualize_relevance.py')
SIZE = 32

CONFIG = '''
custom_imports = dict(imports=['robustvit_mm'], allow_failed_imports=False)
default_scope = 'mmpretrain'
model = dict(
    type='ImageClassifier',
    backbone=dict(type='VisionTransformer', img_size=32, patch_size=4,
                  arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)),
    neck=None,
    head=dict(type='VisionTransformerClsHead', num_classes=3, in_channels=32))
data_preprocessor = dict(num_classes=3, mean=[127.5] * 3, std=[127.5] * 3, to_rgb=True)
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadForegroundMask'),   # mask steps are dropped by the tool (no masks for bare images)
    dict(type='WithMask', transforms=[dict(type='Resize', scale=(32, 32), keep_ratio=False)]),
    dict(type='PackInputs', algorithm_keys=['fg_mask', 'ignore_mask']),
]
test_dataloader = dict(batch_size=1, num_workers=0,
                       dataset=dict(type='CustomDataset', data_root='unused', pipeline=test_pipeline))
'''


def _write_inputs(tmp_path):
    rng = np.random.default_rng(0)
    images = tmp_path / 'images'
    images.mkdir()
    # A red image (RGB) and a blue-background one with a bright square; written as BGR by cv2.
    red = np.zeros((40, 48, 3), np.uint8)
    red[..., 2] = 220  # BGR: red channel last
    red = np.clip(red + rng.normal(0, 10, red.shape), 0, 255).astype(np.uint8)
    blue = np.zeros((40, 48, 3), np.uint8)
    blue[..., 0] = 200
    blue[10:26, 12:30] = 255
    assert cv2.imwrite(str(images / 'red.jpg'), red)
    assert cv2.imwrite(str(images / 'blue.jpg'), blue)
    (images / 'broken.jpg').write_bytes(b'this is not a JPEG at all')
    return images


def _write_model(tmp_path):
    config = tmp_path / 'tiny_vit.py'
    config.write_text(textwrap.dedent(CONFIG))
    cfg = Config.fromfile(str(config))
    init_default_scope('mmpretrain')
    from mmpretrain.registry import MODELS
    torch.manual_seed(0)
    model_cfg = cfg.model.copy()
    model_cfg['data_preprocessor'] = cfg.data_preprocessor
    model = MODELS.build(model_cfg)
    for param in model.head.parameters():  # a trained-looking, non-zero head
        torch.nn.init.normal_(param, std=0.5)
    for layer in model.backbone.layers:  # less uniform attention: a clearly structured map
        torch.nn.init.normal_(layer.attn.qkv.weight, std=0.2)
    checkpoint = tmp_path / 'tiny_vit.pth'
    torch.save({'state_dict': model.state_dict(),
                'meta': {'dataset_meta': {'classes': ['ant', 'bee', 'cow']}}}, str(checkpoint))
    return str(config), str(checkpoint), model.eval()


def _expected_relevance(model, image_path):
    """The relevance the tool should draw, computed in-process (same pipeline steps)."""
    from mmcv.transforms import Compose
    from mmengine.dataset import pseudo_collate
    pipeline = Compose([dict(type='LoadImageFromFile'),
                        dict(type='Resize', scale=(SIZE, SIZE), keep_ratio=False),
                        dict(type='PackInputs')])
    batch = model.data_preprocessor(pseudo_collate([pipeline(dict(img_path=image_path))]), False)
    relevance, logits = gae_relevance(model, batch['inputs'])
    return relevance[0, 0].detach().numpy(), logits[0].detach()


def _run(args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env.pop('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', None)
    return subprocess.run([sys.executable, TOOL, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_tool_writes_rgb_panels_and_reports_the_corrupt_file(tmp_path):
    images = _write_inputs(tmp_path)
    config, checkpoint, model = _write_model(tmp_path)
    out = tmp_path / 'out'
    result = _run([config, checkpoint, str(images / 'red.jpg'), str(images / 'broken.jpg'),
                   str(images / 'blue.jpg'), '--out', str(out), '--device', 'cpu'], cwd=str(tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert 'broken.jpg' in result.stderr, output
    assert 'Traceback' not in output, output
    assert '[1/3]' in output and '[3/3]' in output, 'progress per image'

    for stem in ('red', 'blue'):
        plain = out / f'{stem}_relevance.png'
        through_visualizer = out / 'vis_data' / 'vis_image' / f'{stem}_0.png'
        assert plain.is_file() and through_visualizer.is_file(), output
        row = cv2.cvtColor(cv2.imread(str(plain)), cv2.COLOR_BGR2RGB)
        assert row.shape == (SIZE, 3 * SIZE + 2 * 2, 3), row.shape  # 3 panels, 2-px gaps
        np.testing.assert_array_equal(cv2.imread(str(through_visualizer)), cv2.imread(str(plain)))

        relevance, logits = _expected_relevance(model, str(images / f'{stem}.jpg'))
        probs = logits.softmax(0)
        pred = int(probs.argmax())
        name = ['ant', 'bee', 'cow'][pred]
        assert f'{stem}.jpg: predicted class {pred} ({name}), top-1 score ' \
               f'{float(probs[pred]):.4f}' in output, output

        image, heat = row[:, :SIZE], row[:, SIZE + 2:2 * SIZE + 2]
        # JET in RGB: the most relevant pixel is red (R > B), the least relevant blue (B > R).
        top = np.unravel_index(relevance.argmax(), relevance.shape)
        bottom = np.unravel_index(relevance.argmin(), relevance.shape)
        assert relevance.max() - relevance.min() > 0.5
        r, g, b = heat[top].astype(int)
        assert r > 100 and r > b + 80, (stem, heat[top])
        r, g, b = heat[bottom].astype(int)
        assert b > 100 and b > r + 80, (stem, heat[bottom])
        # The image panel is the picture in RGB order.
        mean = image.reshape(-1, 3).mean(0)
        if stem == 'red':
            assert mean[0] > mean[2] + 100, mean
        else:
            assert mean[2] > mean[0] + 100, mean
    assert not (out / 'broken_relevance.png').exists()


@pytest.mark.slow
def test_tool_accepts_folders_targets_and_other_methods(tmp_path):
    images = _write_inputs(tmp_path)
    (images / 'broken.jpg').unlink()
    (images / 'notes.txt').write_text('not an image, ignored inside a folder')
    config, checkpoint, _ = _write_model(tmp_path)
    out = tmp_path / 'out'
    result = _run([config, checkpoint, str(images), '--out', str(out), '--method', 'rollout',
                   '--target', '2', '--device', 'cpu'], cwd=str(tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert sorted(p.name for p in out.glob('*.png')) == ['blue_relevance.png', 'red_relevance.png']
    assert 'explaining class 2' in output


@pytest.mark.slow
def test_tool_names_missing_inputs_and_bad_targets(tmp_path):
    images = _write_inputs(tmp_path)
    config, checkpoint, _ = _write_model(tmp_path)
    (tmp_path / 'empty_dir').mkdir()
    result = _run([config, checkpoint, str(tmp_path / 'missing.jpg'), str(tmp_path / 'empty_dir'),
                   str(images / 'red.jpg'), '--out', str(tmp_path / 'out'), '--target', '7',
                   '--device', 'cpu'], cwd=str(tmp_path))
    assert result.returncode != 0
    for name in ('missing.jpg', 'empty_dir', '--target 7'):
        assert name in result.stderr, result.stderr
    assert 'Traceback' not in result.stderr, result.stderr


def _load_tool():
    spec = importlib.util.spec_from_file_location('visualize_relevance', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tool_argument_and_pipeline_helpers(tmp_path):
    tool = _load_tool()
    args = tool.parse_args(['c.py', 'w.pth', 'a.jpg', 'b', '--out', 'o'])
    assert args.checkpoint == 'w.pth' and args.paths == ['a.jpg', 'b'] and args.method == 'gae'
    args = tool.parse_args(['c.py', 'a.jpg', '--out', 'o', '--method', 'raw_attention'])
    assert args.checkpoint is None and args.paths == ['a.jpg']
    args = tool.parse_args(['c.py', 'https://host/w.pth', 'a.jpg', '--out', 'o'])
    assert args.checkpoint == 'https://host/w.pth'
    with pytest.raises(SystemExit):
        tool.parse_args(['c.py', 'w.pth', '--out', 'o'])  # a checkpoint but no image

    steps = tool._strip_mask_steps([
        dict(type='LoadImageFromFile'), dict(type='LoadForegroundMask'),
        dict(type='WithMask', transforms=[dict(type='ResizeEdge', scale=36),
                                          dict(type='CenterCrop', crop_size=32)]),
        dict(type='PackInputs', algorithm_keys=['fg_mask'])])
    assert [s['type'] for s in steps] == ['LoadImageFromFile', 'ResizeEdge', 'CenterCrop',
                                          'PackInputs']

    (tmp_path / 'd' / 'sub').mkdir(parents=True)
    for name in ('d/b.png', 'd/sub/a.JPG', 'd/readme.txt', 'x.dat'):
        (tmp_path / name).write_bytes(b'')
    images, problems = tool.collect_images([str(tmp_path / 'd'), str(tmp_path / 'x.dat'),
                                            str(tmp_path / 'nope.jpg')])
    assert images == [str(tmp_path / 'd' / 'b.png'), str(tmp_path / 'd' / 'sub' / 'a.JPG'),
                      str(tmp_path / 'x.dat')]
    assert len(problems) == 1 and 'nope.jpg' in problems[0]

    used = set()
    assert [tool.unique_stem(p, used) for p in ('a/x.jpg', 'b/x.png', 'c/x.jpg')] == \
        ['x', 'x_1', 'x_2']
