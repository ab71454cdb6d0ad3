"""RelevanceInferencer (robustvit_mm.apis) and its command line, tools/visualize_relevance.py:
a tiny config + checkpoint, real JPEGs, a corrupt file, TensorBoard's event file read back."""
import os
import os.path as osp
import re
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
import torch

import robustvit_mm  # noqa: F401
from robustvit_mm.apis import RelevanceInferencer, init_checked_model
from robustvit_mm.apis.inferencer import collect_images, strip_mask_steps
from robustvit_mm.relevance import attention_rollout, gae_relevance
from stock_run_helpers import REPO, tensorboard_images

TOOL = osp.join(REPO, 'tools', 'visualize_relevance.py')
SIZE = 32
BAND = 14  # title band above the panels for a 32-px image
CLASSES = ['ant', 'bee', 'cow']

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
    dict(type='LoadForegroundMask'),   # mask steps are dropped (no masks for bare images)
    dict(type='WithMask', transforms=[dict(type='Resize', scale=(32, 32), keep_ratio=False)]),
    dict(type='PackInputs', algorithm_keys=['fg_mask', 'ignore_mask']),
]
test_dataloader = dict(batch_size=1, num_workers=0,
                       dataset=dict(type='CustomDataset', data_root='unused', pipeline=test_pipeline))
'''


@pytest.fixture
def inputs(tmp_path):
    """images/red.jpg, images/blue.jpg (blue background, bright square), images/broken.jpg."""
    rng = np.random.default_rng(0)
    images = tmp_path / 'images'
    images.mkdir()
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


@pytest.fixture
def tiny(tmp_path):
    """(config path, checkpoint path, the model it holds)."""
    config = tmp_path / 'tiny_vit.py'
    config.write_text(textwrap.dedent(CONFIG))
    torch.manual_seed(0)
    model = init_checked_model(str(config))
    for param in model.head.parameters():  # a trained-looking, non-zero head
        torch.nn.init.normal_(param, std=0.5)
    for layer in model.backbone.layers:  # less uniform attention: a clearly structured map
        torch.nn.init.normal_(layer.attn.qkv.weight, std=0.2)
    checkpoint = tmp_path / 'tiny_vit.pth'
    torch.save({'state_dict': model.state_dict(),
                'meta': {'dataset_meta': {'classes': CLASSES}}}, str(checkpoint))
    return str(config), str(checkpoint), model.eval()


def model_inputs(model, path):
    """The normalised input the inferencer should build (same steps, independently)."""
    from mmengine.dataset import Compose, pseudo_collate
    from mmpretrain.registry import TRANSFORMS
    pipeline = Compose([TRANSFORMS.build(t) for t in (
        dict(type='LoadImageFromFile'), dict(type='Resize', scale=(SIZE, SIZE), keep_ratio=False),
        dict(type='PackInputs'))])
    return model.data_preprocessor(pseudo_collate([pipeline(dict(img_path=path))]), False)['inputs']


def test_inferencer_predicts_explains_and_draws(tmp_path, inputs, tiny):
    config, checkpoint, model = tiny
    inferencer = RelevanceInferencer(config, checkpoint)
    paths = [str(inputs / 'red.jpg'), str(inputs / 'blue.jpg')]
    blue_array = cv2.imread(paths[1])
    results = inferencer([*paths, blue_array], batch_size=2, draw=True)
    assert [r['input'] for r in results] == [*paths, 'array #2']

    for path, result in zip(paths, results):
        x = model_inputs(model, path)
        relevance, logits = gae_relevance(model, x)
        probs = logits.softmax(1)[0]
        assert result['pred_label'] == int(probs.argmax()) == result['target']
        assert result['pred_class'] == CLASSES[result['pred_label']]  # names from the checkpoint
        assert result['pred_score'] == pytest.approx(float(probs.max()), abs=1e-5)
        np.testing.assert_allclose(result['relevance'], relevance[0, 0].detach().numpy(), atol=1e-5)
        rel = result['relevance']
        assert rel.shape == (SIZE, SIZE) and rel.max() - rel.min() > 0.5

        figure = result['visualization']
        assert figure.shape[0] == BAND + SIZE and figure.shape[1] > 3 * SIZE + 4
        image = figure[BAND:, :SIZE]
        heat = figure[BAND:, SIZE + 2:2 * SIZE + 2]
        np.testing.assert_array_equal(image, result['image'])
        # JET in RGB: the most relevant pixel is red, the least relevant blue
        r, _, b = heat[np.unravel_index(rel.argmax(), rel.shape)].astype(int)
        assert r > 100 and r > b + 80
        r, _, b = heat[np.unravel_index(rel.argmin(), rel.shape)].astype(int)
        assert b > 100 and b > r + 80
        mean = image.reshape(-1, 3).mean(0)  # the image panel is RGB
        assert (mean[0] > mean[2] + 100) if path.endswith('red.jpg') else (mean[2] > mean[0] + 100), mean
        assert (figure[:BAND, :3 * SIZE] < 100).all(axis=2).sum() > 20  # the title is written
        bar = figure[BAND:, 3 * SIZE + 6:3 * SIZE + 9].astype(int)  # colour bar: 1 on top (red)
        assert bar[0, :, 0].min() > 100 and bar[-1, :, 2].min() > 100

    # the array (BGR, as cv2 reads it) gives what the model says for it
    x = model.data_preprocessor(dict(inputs=[torch.from_numpy(cv2.resize(
        blue_array, (SIZE, SIZE))).permute(2, 0, 1)]), False)['inputs']
    np.testing.assert_allclose(results[2]['relevance'], gae_relevance(model, x)[0][0, 0].detach().numpy(),
                               atol=1e-5)
    # batches change nothing; rollout and another target are honoured
    single = inferencer(paths[0])[0]
    np.testing.assert_allclose(single['relevance'], results[0]['relevance'], atol=1e-5)
    assert 'visualization' not in single
    rolled = inferencer(paths[0], method='rollout', target=2)[0]
    expected, _ = attention_rollout(model, model_inputs(model, paths[0]),
                                    torch.tensor([2]))
    np.testing.assert_allclose(rolled['relevance'], expected[0, 0].detach().numpy(), atol=1e-5)
    assert rolled['target'] == 2 and rolled['method'] == 'rollout'
    assert 'explaining 2' in inferencer.title(rolled) or rolled['pred_label'] == 2


def test_inferencer_refuses_bad_input(tmp_path, inputs, tiny):
    config, checkpoint, _ = tiny
    inferencer = RelevanceInferencer(config, checkpoint)
    broken = str(inputs / 'broken.jpg')
    with pytest.raises(ValueError, match=r'cannot read .*broken\.jpg'):
        inferencer(broken)
    out = inferencer([str(inputs / 'red.jpg'), broken, str(tmp_path / 'nope.jpg')],
                     skip_unreadable=True)
    assert [('error' in r, osp.basename(r['input'])) for r in out] == \
        [(True, 'nope.jpg'), (False, 'red.jpg'), (True, 'broken.jpg')]
    with pytest.raises(FileNotFoundError, match='nope.jpg: no such file'):
        inferencer(str(tmp_path / 'nope.jpg'))
    with pytest.raises(ValueError, match=r'target=3 is not a class index in 0\.\.2'):
        inferencer(str(inputs / 'red.jpg'), target=3)
    with pytest.raises(ValueError, match='unknown relevance method'):
        inferencer(str(inputs / 'red.jpg'), method='gradcam')
    with pytest.raises(ValueError, match=r'alpha=5.*\[0, 1\]'):
        RelevanceInferencer(config, checkpoint, alpha=5)
    # weights that do not fit: the one checkpoint check, naming the converter for timm files
    from timm.models.vision_transformer import VisionTransformer
    timm_file = str(tmp_path / 'timm.pth')
    torch.save(VisionTransformer(img_size=32, patch_size=4, embed_dim=32, depth=2, num_heads=2,
                                 mlp_ratio=2.0, num_classes=3).state_dict(), timm_file)
    with pytest.raises(ValueError, match=r'convert them with tools/convert_timm_weights\.py'):
        RelevanceInferencer(config, timm_file)
    resnet = tmp_path / 'resnet.py'
    resnet.write_text(CONFIG.replace(
        "backbone=dict(type='VisionTransformer', img_size=32, patch_size=4,\n"
        "                  arch=dict(embed_dims=32, num_layers=2, num_heads=2, "
        "feedforward_channels=64))", "backbone=dict(type='ResNet', depth=18)"))
    with pytest.raises(TypeError, match='ResNet'):
        RelevanceInferencer(str(resnet))


def test_pipeline_and_input_helpers(tmp_path):
    steps = strip_mask_steps([
        dict(type='LoadImageFromFile'), dict(type='LoadForegroundMask'),
        dict(type='WithMask', transforms=[dict(type='ResizeEdge', scale=36),
                                          dict(type='CenterCrop', crop_size=32)]),
        dict(type='PackInputs', algorithm_keys=['fg_mask'])])
    assert [s['type'] for s in steps] == ['LoadImageFromFile', 'ResizeEdge', 'CenterCrop',
                                          'PackInputs']
    (tmp_path / 'd' / 'sub').mkdir(parents=True)
    (tmp_path / 'empty').mkdir()
    for name in ('d/b.png', 'd/sub/a.JPG', 'd/readme.txt', 'x.dat'):
        (tmp_path / name).write_bytes(b'')
    images, problems = collect_images([str(tmp_path / 'd'), str(tmp_path / 'x.dat'),
                                       str(tmp_path / 'nope.jpg'), str(tmp_path / 'empty')])
    assert images == [str(tmp_path / 'd' / 'b.png'), str(tmp_path / 'd' / 'sub' / 'a.JPG'),
                      str(tmp_path / 'x.dat')]
    assert [(osp.basename(p), why) for p, why in problems] == [
        ('nope.jpg', 'no such file or folder'), ('empty', 'folder has no image files')]


def _run(args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, TOOL, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_tool_writes_every_image_to_every_backend(tmp_path, inputs, tiny):
    config, checkpoint, _ = tiny
    out = tmp_path / 'out'
    result = _run([config, checkpoint, str(inputs / 'red.jpg'), str(inputs / 'broken.jpg'),
                   str(inputs / 'blue.jpg'), str(tmp_path / 'missing.jpg'), '--out', str(out),
                   '--device', 'cpu', '--vis-backend', 'tensorboard', '--batch-size', '2'],
                  cwd=str(tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert 'broken.jpg' in result.stderr and 'missing.jpg' in result.stderr, output
    assert 'Traceback' not in output, output
    assert '[1/3]' in output and '[3/3]' in output and '2 of 3 image(s) written' in output
    for stem in ('red', 'blue'):
        plain = out / f'{stem}_relevance.png'
        np.testing.assert_array_equal(cv2.imread(str(out / 'vis_data' / 'vis_image' /
                                                     f'{stem}_0.png')), cv2.imread(str(plain)))
        assert re.search(stem + r'\.jpg: predicted class \d \((ant|bee|cow)\), top-1 score',
                         output), output
    assert not (out / 'broken_relevance.png').exists()
    # the visualizer was closed: TensorBoard holds the LAST image too
    assert tensorboard_images(out / 'vis_data') == {'red': 1, 'blue': 1}


@pytest.mark.slow
def test_tool_refuses_unconverted_weights_and_bad_options(tmp_path, inputs, tiny):
    config, _, _ = tiny
    result = _run([config, str(inputs / 'red.jpg'), '--out', str(tmp_path / 'o'), '--alpha', '5'],
                  cwd=str(tmp_path))
    assert result.returncode == 2 and '--alpha 5.0' in result.stderr, result.stderr
    from timm.models.vision_transformer import VisionTransformer
    timm_file = str(tmp_path / 'timm.pth')
    torch.save(VisionTransformer(img_size=32, patch_size=4, embed_dim=32, depth=2, num_heads=2,
                                 mlp_ratio=2.0, num_classes=3).state_dict(), timm_file)
    result = _run([config, timm_file, str(inputs / 'red.jpg'), '--out', str(tmp_path / 'o'),
                   '--device', 'cpu'], cwd=str(tmp_path))
    assert result.returncode == 2, result.stdout + result.stderr
    assert 'convert them with tools/convert_timm_weights.py' in result.stderr
    assert 'Traceback' not in result.stderr and not (tmp_path / 'o' / 'red_relevance.png').exists()
