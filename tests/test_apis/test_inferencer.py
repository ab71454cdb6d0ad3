"""RelevanceInferencer (robustvit_mm.apis) and its command line, tools/visualize_relevance.py:
a tiny config + checkpoint, real JPEGs, a corrupt file, TensorBoard's event file read back."""
import os
import os.path as osp
import re
import subprocess
import sys
import textwrap
import tracemalloc

import cv2
import numpy as np
import pytest
import torch

import robustvit_mm  # noqa: F401
from mmpretrain.structures import DataSample

from robustvit_mm.apis import RelevanceInferencer, init_checked_model
from robustvit_mm.apis.inputs import Unreadable, collect_images, strip_mask_steps
from robustvit_mm.datasets.imagenet_classes import imagenet_class_names, imagenet_wnids
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
    inferencer = RelevanceInferencer(config, pretrained=checkpoint)
    paths = [str(inputs / 'red.jpg'), str(inputs / 'blue.jpg')]
    blue_array = cv2.imread(paths[1])
    results = inferencer([*paths, blue_array], batch_size=2, return_vis=True)
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
    rolled = inferencer(paths[0], method='attention_rollout')[0]
    expected, _ = attention_rollout(model, model_inputs(model, paths[0]))
    np.testing.assert_allclose(rolled['relevance'], expected[0, 0].detach().numpy(), atol=1e-5)
    assert rolled['method'] == 'attention_rollout'
    # the class argmax returns (a NumPy integer) is a target like any other
    other = np.int64((results[0]['pred_label'] + 1) % 3)
    explained = inferencer(paths[0], target=other)[0]
    expected, _ = gae_relevance(model, model_inputs(model, paths[0]), torch.tensor([int(other)]))
    np.testing.assert_allclose(explained['relevance'], expected[0, 0].detach().numpy(), atol=1e-5)
    assert explained['target'] == other and type(explained['target']) is int
    assert f'explaining {other}' in inferencer.title(explained)


def test_inferencer_refuses_bad_input(tmp_path, inputs, tiny):
    config, checkpoint, _ = tiny
    inferencer = RelevanceInferencer(config, checkpoint)
    broken = str(inputs / 'broken.jpg')
    with pytest.raises(ValueError, match=r'cannot read .*broken\.jpg'):
        inferencer(broken)
    with pytest.raises(FileNotFoundError, match='nope.jpg: no such file'):
        inferencer(str(tmp_path / 'nope.jpg'))
    with pytest.raises(ValueError, match=r'target=3 is not a class index in 0\.\.2'):
        inferencer(str(inputs / 'red.jpg'), target=3)
    with pytest.raises(ValueError, match='unknown relevance method'):
        inferencer(str(inputs / 'red.jpg'), method='gradcam')
    with pytest.raises(ValueError, match="'rollout' is called 'attention_rollout'"):
        inferencer(str(inputs / 'red.jpg'), method='rollout')
    with pytest.raises(ValueError, match=r'target=True is not a class index'):
        inferencer(str(inputs / 'red.jpg'), target=True)
    with pytest.raises(ValueError, match=r"unknown argument \{'dpi'\}"):
        inferencer(str(inputs / 'red.jpg'), dpi=3)
    (tmp_path / 'taken').write_text('a file, not a folder')
    with pytest.raises(ValueError, match=r'show_dir=.*taken.* is a file'):
        inferencer(str(inputs / 'red.jpg'), show_dir=str(tmp_path / 'taken'))
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


def test_results_keep_the_order_of_the_inputs(tmp_path, inputs, tiny):
    """results[i] belongs to the i-th image (a folder counts as its sorted image files) with
    skip_unreadable: a missing path or an empty folder gives its error record in its place."""
    config, checkpoint, _ = tiny
    inferencer = RelevanceInferencer(config, pretrained=checkpoint)
    (tmp_path / 'empty').mkdir()
    array = cv2.imread(str(inputs / 'red.jpg'))
    given = [str(inputs / 'red.jpg'), str(tmp_path / 'nope.jpg'), str(inputs),
             str(tmp_path / 'empty'), array]
    results = inferencer(given, batch_size=2, skip_unreadable=True)
    assert [(osp.basename(r['input']), 'error' in r) for r in results] == [
        ('red.jpg', False), ('nope.jpg', True), ('blue.jpg', False), ('broken.jpg', True),
        ('red.jpg', False), ('empty', True), ('array #6', False)]
    assert results[1]['error'] == 'no such file or folder'
    assert results[5]['error'] == 'folder has no image files'
    assert 'cannot identify' in results[3]['error'] or 'broken.jpg' in results[3]['error']
    # each result is the one of its own image: the same as explaining it alone
    for index, image in ((0, given[0]), (2, str(inputs / 'blue.jpg')), (6, array)):
        alone = inferencer(image)[0]
        np.testing.assert_allclose(results[index]['relevance'], alone['relevance'], atol=1e-5)
        assert results[index]['pred_label'] == alone['pred_label']


def test_class_names_are_readable(tmp_path, inputs, tiny):
    """pred_class: ImageNet-1k wnids (what trained checkpoints save) become ImageNet's names; a
    1000-class model without names (converted weights) gets ImageNet-1k's; other names stay."""
    config, _, model = tiny
    wnids = list(imagenet_wnids()[:3])
    trained = tmp_path / 'trained.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {'dataset_meta': {'classes': wnids}}},
               str(trained))
    result = RelevanceInferencer(config, pretrained=str(trained))(str(inputs / 'red.jpg'))[0]
    assert result['pred_class'] == ['tench', 'goldfish', 'great white shark'][result['pred_label']]
    wide = tmp_path / 'imagenet_head.py'
    wide.write_text(CONFIG.replace('num_classes=3', 'num_classes=1000'))
    converted = init_checked_model(str(wide))
    torch.nn.init.normal_(converted.head.layers.head.weight, std=0.5)
    converted_file = tmp_path / 'converted.pth'
    torch.save(converted.state_dict(), str(converted_file))  # a bare state dict: no class names
    result = RelevanceInferencer(str(wide), pretrained=str(converted_file))(
        str(inputs / 'red.jpg'))[0]
    assert result['pred_class'] == imagenet_class_names()[result['pred_label']]
    assert not result['pred_class'].startswith('n0')
    named = RelevanceInferencer(config, pretrained=str(trained), classes=CLASSES)
    assert named(str(inputs / 'red.jpg'))[0]['pred_class'] in CLASSES


def test_mmpretrain_option_names(tmp_path, inputs, tiny):
    """pretrained= / show_dir= / return_vis= as in mmpretrain's inferencers; the other
    spellings are refused naming mmpretrain's."""
    config, checkpoint, _ = tiny
    with pytest.raises(TypeError, match=r'checkpoint= is called pretrained='):
        RelevanceInferencer(config, checkpoint=checkpoint)
    with pytest.raises(ValueError, match='pretrained=True: give the weights'):
        RelevanceInferencer(config, pretrained=True)
    inferencer = RelevanceInferencer(config, pretrained=checkpoint)
    with pytest.raises(TypeError, match=r'out_dir= is called show_dir='):
        inferencer(str(inputs / 'red.jpg'), out_dir=str(tmp_path / 'o'))
    with pytest.raises(TypeError, match=r'draw= is called return_vis='):
        inferencer(str(inputs / 'red.jpg'), draw=True)
    with inferencer:
        result = inferencer(str(inputs / 'red.jpg'), show_dir=str(tmp_path / 'vis'))[0]
    assert result['out_file'] == str(tmp_path / 'vis' / 'red_relevance.png')
    assert cv2.imread(result['out_file']).shape[0] == BAND + SIZE
    assert 'visualization' not in result


def test_output_names_are_unique_and_the_same_on_every_call(tmp_path, inputs, tiny):
    config, checkpoint, _ = tiny
    for folder in ('a', 'b'):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / 'red.jpg').write_bytes((inputs / 'red.jpg').read_bytes())
    array = cv2.imread(str(inputs / 'blue.jpg'))
    given = [str(tmp_path / 'a'), str(tmp_path / 'b'), array]
    out = tmp_path / 'vis'
    with RelevanceInferencer(config, pretrained=checkpoint) as inferencer:
        calls = [[osp.basename(r['out_file']) for r in inferencer(given, show_dir=str(out))]
                 for _ in range(2)]
    assert calls == [['red_relevance.png', 'red_1_relevance.png', 'array_2_relevance.png']] * 2
    assert sorted(os.listdir(out)) == ['array_2_relevance.png', 'red_1_relevance.png',
                                       'red_relevance.png', 'vis_data']


def test_the_four_stages_make_the_call(inputs, tiny):
    """__call__ is BaseInferencer's stages in order: preprocess -> forward -> visualize ->
    postprocess, each taking its declared keyword arguments; results as DataSample on request."""
    config, checkpoint, _ = tiny
    inferencer = RelevanceInferencer(config, pretrained=checkpoint)
    paths = [str(inputs / 'red.jpg'), str(inputs / 'blue.jpg')]
    records = next(inferencer.preprocess(inferencer._inputs_to_list(paths), batch_size=2))
    assert [r['input'] for r in records] == paths and all('data' in r for r in records)
    preds = inferencer.forward(records, method='gae')
    staged = inferencer.postprocess(preds, inferencer.visualize(preds, return_vis=True))
    called = inferencer(paths, batch_size=2, return_vis=True)
    for one, other in zip(staged, called):
        assert one.keys() == other.keys()
        np.testing.assert_array_equal(one['visualization'], other['visualization'])
        np.testing.assert_allclose(one['relevance'], other['relevance'], atol=1e-6)
    samples = inferencer(paths, return_datasamples=True)
    assert all(isinstance(s, DataSample) for s in samples)
    assert [int(s.pred_label) for s in samples] == [r['pred_label'] for r in called]
    np.testing.assert_allclose(samples[0].relevance, called[0]['relevance'], atol=1e-6)
    assert samples[1].input == paths[1] and samples[1].method == 'gae'
    light = inferencer(paths, return_maps=False)[0]
    assert not {'relevance', 'image', 'pred_scores'} & set(light) and 'pred_label' in light


def test_progress_is_shown(capsys, inputs, tiny):
    config, checkpoint, _ = tiny
    inferencer = RelevanceInferencer(config, pretrained=checkpoint)
    paths = [str(inputs / 'red.jpg'), str(inputs / 'blue.jpg'), str(inputs / 'red.jpg')]
    capsys.readouterr()
    inferencer(paths, batch_size=2)
    err = capsys.readouterr().err
    assert re.search(r'Relevance: \[>+\] 3/3, [\d.]+ images/s', err), err
    inferencer(paths, batch_size=2, show_progress=False)
    assert 'Relevance:' not in capsys.readouterr().err


def _peak_memory(inferencer, folder, out):
    """Peak traced memory (bytes) of writing every figure of ``folder`` through ``stream``."""
    tracemalloc.start()
    try:
        written = sum('out_file' in r for r in inferencer.stream(
            str(folder), batch_size=50, show_dir=str(out), return_maps=False,
            show_progress=False))
        return written, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_writing_a_data_set_runs_in_flat_memory(tmp_path, tiny):
    """Figures of 1500 images take no more memory than those of 150: results are handed out one
    at a time and not kept. The allowance is 5 % of what keeping the results would cost."""
    config, checkpoint, _ = tiny
    rng = np.random.default_rng(0)
    sizes = dict(warm=20, few=150, many=1500)
    for name, count in sizes.items():
        (tmp_path / name).mkdir()
        for i in range(count):
            cv2.imwrite(str(tmp_path / name / f'{i:05d}.png'),
                        rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    inferencer = RelevanceInferencer(config, pretrained=checkpoint)
    with inferencer:
        peaks = {name: _peak_memory(inferencer, tmp_path / name, tmp_path / f'out_{name}')
                 for name in sizes}
    assert {name: written for name, (written, _) in peaks.items()} == sizes
    assert len(os.listdir(tmp_path / 'out_many')) == sizes['many'] + 1  # + vis_data/
    full = inferencer(str(tmp_path / 'few' / '00000.png'), return_vis=True)[0]
    kept_per_image = sum(full[k].nbytes for k in ('relevance', 'image', 'pred_scores',
                                                   'visualization'))
    growth = peaks['many'][1] - peaks['few'][1]
    assert growth < 0.05 * (sizes['many'] - sizes['few']) * kept_per_image, (growth, peaks)


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
    images = collect_images([str(tmp_path / 'd'), str(tmp_path / 'nope.jpg'),
                             str(tmp_path / 'x.dat'), str(tmp_path / 'empty')])
    assert images == [str(tmp_path / 'd' / 'b.png'), str(tmp_path / 'd' / 'sub' / 'a.JPG'),
                      Unreadable(str(tmp_path / 'nope.jpg'), 'no such file or folder'),
                      str(tmp_path / 'x.dat'),
                      Unreadable(str(tmp_path / 'empty'), 'folder has no image files')]


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
    # one line per input (errors on stderr), numbered in the order given
    lines = sorted(line for line in output.splitlines() if line.startswith('['))
    assert [re.match(r'\[(\d)/4\] \S+?(\w+)\.jpg: (\w+)', line).groups() for line in lines] == [
        ('1', 'red', 'predicted'), ('2', 'broken', 'error'), ('3', 'blue', 'predicted'),
        ('4', 'missing', 'error')], output
    assert '2 of 4 image(s) written' in output
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
    # --out naming a file: refused before the model (and its missing checkpoint) is loaded
    (tmp_path / 'taken.png').write_bytes(b'an existing file')
    result = _run([config, str(tmp_path / 'absent.pth'), str(inputs / 'red.jpg'), '--out',
                   str(tmp_path / 'taken.png')], cwd=str(tmp_path))
    assert result.returncode == 2 and 'Traceback' not in result.stderr, result.stderr
    assert re.search(r'--out \S*taken\.png: is a file; give a folder', result.stderr), result.stderr
    assert 'absent.pth' not in result.stderr and (tmp_path / 'taken.png').read_bytes() == \
        b'an existing file'
