"""SIS with gradients (paper Appendix A, Figure 5) on tiny models: every reported subset is checked
by running the model again on the masked image."""
import json
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from conftest import build_tiny_model
from stock_run_helpers import TINY_MODEL, save_tiny_checkpoint, tensorboard_images

from robustvit_mm.experiments.sis import (SISOptions, random_classes, run_sis, subset_confidence,
                                          sufficient_input_subsets)


@pytest.fixture
def one_thread():
    """The searches are ~100 small forward/backward passes: on a shared, loaded CPU one thread is
    many times faster than two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_subsets_give_the_reported_confidence(one_thread):
    model = build_tiny_model('vit', img_size=32)
    image = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(image[None], mode='tensor').softmax(dim=1)[0]
    predicted = int(full.argmax())
    others = [c for c in range(7) if c != predicted][:3]
    results = sufficient_input_subsets(model, image, [predicted, *others], threshold=0.5)
    assert [r.target for r in results] == [predicted, *others]
    for result in results:
        assert result.found, result.message
        assert result.mask.shape == (32, 32) and result.mask.dtype == bool
        assert result.size == int(result.mask.sum()) and result.pixels == 1024
        assert 0 < result.size < 1024  # sparse: far from the whole image
        # the model, run again on the image with only the subset shown, gives that confidence
        again = subset_confidence(model, image, result.mask, result.target)
        assert again == pytest.approx(result.confidence, abs=1e-5) and again >= 0.5
        assert result.full_confidence == pytest.approx(float(full[result.target]), abs=1e-6)
        assert f'{result.size} of 1024 pixels' in result.message
    # the other classes start far below the threshold: their subsets are an adversarial find
    assert all(r.full_confidence < 0.5 for r in results[1:])


def test_search_stops_and_says_so_when_no_subset_is_found(one_thread):
    model = build_tiny_model('vit', img_size=32)
    with torch.no_grad():  # a head that gives every class 1/7 whatever it sees
        model.head.layers.head.weight.zero_()
        model.head.layers.head.bias.zero_()
    image = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(2))
    [result] = sufficient_input_subsets(model, image, [3], threshold=0.5, fraction=0.1)
    assert not result.found and result.mask is None and result.size == 0
    assert result.confidence is None
    assert result.best_confidence == pytest.approx(1 / 7, abs=1e-5)
    # removed down to a single pixel: 10 % of what remains each step, at least one pixel
    remaining, steps = 1024, 0
    while remaining > 1:
        remaining -= max(1, int(remaining * 0.1))
        steps += 1
    assert result.steps == steps
    assert result.message.startswith('class 3: no subset found') and 'reached confidence 0.5' \
        in result.message


def test_bad_requests_are_named():
    model = build_tiny_model('vit', img_size=32)
    image = torch.randn(3, 32, 32)
    with pytest.raises(ValueError, match='threshold=1.5: a confidence strictly between 0 and 1'):
        sufficient_input_subsets(model, image, [0], threshold=1.5)
    with pytest.raises(ValueError, match=r'target 7 is not a class index in 0\.\.6'):
        sufficient_input_subsets(model, image, [0, 7])
    with pytest.raises(ValueError, match=r'fraction=0: the share of pixels removed per step'):
        sufficient_input_subsets(model, image, [0], fraction=0)
    with pytest.raises(ValueError, match='--random 9: only 6 classes to draw from'):
        random_classes(7, 9, exclude=[2])
    drawn = random_classes(1000, 5, exclude=[1, 2], seed=3)
    assert drawn == random_classes(1000, 5, exclude=[1, 2], seed=3)
    assert len(set(drawn)) == 5 and not {1, 2} & set(drawn)


def _write_config(path):
    path.write_text(
        f'model = {TINY_MODEL!r}\n'
        "data_preprocessor = dict(num_classes=1000, mean=[127.5] * 3, std=[127.5] * 3, "
        'to_rgb=True)\n'
        "test_dataloader = dict(dataset=dict(type='CustomDataset', pipeline=["
        "dict(type='LoadImageFromFile'), dict(type='Resize', scale=(224, 224)), "
        "dict(type='PackInputs')]))\n")
    return str(path)


@pytest.mark.slow
def test_tool_writes_figure_5_and_every_subset_holds(tmp_path, one_thread):
    config = _write_config(tmp_path / 'tiny.py')
    checkpoint = save_tiny_checkpoint(str(tmp_path / 'tiny.pth'))
    rng = np.random.default_rng(0)
    images = []
    for i in range(2):
        images.append(str(tmp_path / f'img{i}.png'))
        cv2.imwrite(images[-1], rng.integers(0, 256, (96, 128, 3), dtype=np.uint8))
    out = tmp_path / 'sis'
    logged = []
    status = run_sis(SISOptions(config, checkpoint, images, out=str(out), classes=[7], random=1,
                                threshold=0.3, fraction=0.2, vis_backends=['tensorboard']),
                     log=logged.append)
    records = json.loads((out / 'sis_results.json').read_text())
    # per image: its predicted class, the chosen class 7, the same random class
    assert len(records) == 6 and [r['image'] for r in records] == [images[0]] * 3 + [images[1]] * 3
    assert [r['kind'] for r in records[:3]] == ['original', 'chosen', 'random']
    assert records[2]['target'] == records[5]['target']
    assert status == (0 if all(r['found'] for r in records) else 1)
    assert any(r['found'] for r in records)

    # each subset, read back from its mask PNG, gives the reported confidence on the model
    from robustvit_mm.apis import RelevanceInferencer
    from mmengine.dataset import default_collate
    with RelevanceInferencer(config, pretrained=checkpoint) as inferencer:
        model = inferencer.model
        for record in records:
            [item] = next(inferencer.preprocess([record['image']]))
            image = model.data_preprocessor(default_collate([item['data']]), False)['inputs'][0]
            if not record['found']:
                assert record['mask'] is None and 'no subset found' in record['message']
                continue
            mask = cv2.imread(str(out / record['mask']), cv2.IMREAD_GRAYSCALE) > 127
            assert int(mask.sum()) == record['size'] and mask.size == record['pixels'] == 224 * 224
            confidence = subset_confidence(model, image, mask, record['target'])
            assert confidence == pytest.approx(record['confidence'], abs=1e-5)
            assert confidence >= 0.3
    png = (out / 'sis_figure-5.png').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n'
    assert tensorboard_images(out / 'vis_data') == {'sis_figure_5': 1}
    assert any('pixels' in line and 'give confidence' in line for line in logged)


def test_command_line_errors_are_one_line(tmp_path, repo_root):
    proc = subprocess.run([sys.executable, osp.join(repo_root, 'tools', 'sis.py'), 'no.py',
                           'no.pth', 'x.png', '--threshold', '1.2'],
                          capture_output=True, text=True, cwd=repo_root)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        'sis.py: error: --threshold 1.2: a confidence strictly between 0 and 1']
