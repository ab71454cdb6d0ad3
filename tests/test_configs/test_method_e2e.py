"""The method end to end through mmpretrain's STOCK train.py / test.py, on a generated ImageNet-S tree.

A tiny-ViT config inherits the paper's DeiT-S config and overrides only the model size, the image
size, the data roots and (so that 3 short epochs can show an effect) the learning rate.
"""
import json
import os
import os.path as osp
import re

import pytest

from mini_imagenet_s import make_imagenet_s_tree
from stock_run_helpers import AS_CONFIGURED, load_state, run, save_pretrained, scalars
from stock_run_helpers import write_config as stock_write_config


def write_config(tmp_path, tree, epochs):
    return stock_write_config(tmp_path / f'tiny_{epochs}e.py', tree, tmp_path / 'pretrained.pth',
                              epochs=epochs, batch_size=4, num_classes=4, run=AS_CONFIGURED)


@pytest.mark.slow
def test_stock_train_test_resume(tmp_path):
    tree = make_imagenet_s_tree(tmp_path / 'data', num_classes=6, per_class=4, size=(40, 48))
    work_dir = str(tmp_path / 'work')

    config = write_config(tmp_path, tree, epochs=3)
    save_pretrained(config, tmp_path / 'pretrained.pth')
    run('train.py', config, '--work-dir', work_dir)
    records = scalars(work_dir)
    train = [r for r in records if 'loss_background' in r]
    for key in ('loss', 'loss_background', 'loss_foreground', 'loss_cls', 'relevance_iou'):
        assert all(key in r and r[key] == r[key] and abs(r[key]) < 1e6 for r in train), key
    # Relevance moves onto the object: IoU with the mask rises, the background term falls.
    first, last = train[:2], train[-2:]
    mean = lambda rows, k: sum(r[k] for r in rows) / len(rows)  # noqa: E731
    assert mean(last, 'relevance_iou') > mean(first, 'relevance_iou')
    assert mean(last, 'loss_background') < mean(first, 'loss_background')
    val = [r for r in records if 'relevance/loss' in r]
    assert len(val) == 3 and all('accuracy/top1' in r for r in val)

    files = os.listdir(work_dir)
    best = [f for f in files if f.startswith('best_relevance_loss')]
    assert len(best) == 1, files
    # The logged validation loss is the value the best-checkpoint rule compared (not a running
    # mean over epochs): the kept epoch is the last minimum of the logged curve, with that score.
    logged = [r['relevance/loss'] for r in val]
    best_epoch = int(best[0].rsplit('epoch_', 1)[1].split('.')[0])
    assert best_epoch == max(i + 1 for i, v in enumerate(logged) if v == min(logged)), logged
    hub = load_state(osp.join(work_dir, best[0]))['message_hub']['runtime_info']
    assert logged[best_epoch - 1] == pytest.approx(hub['best_score'], abs=1e-6)
    assert [r['step'] for r in val] == [1, 2, 3]
    with open(osp.join(work_dir, 'imagenet_s_split.json')) as f:
        split = json.load(f)
    assert sorted(split['train'] + split['val']) == sorted(tree['wnids'])
    vis_dirs = [d for d in os.listdir(work_dir) if osp.isdir(osp.join(work_dir, d, 'vis_data'))]
    pictures = os.listdir(osp.join(work_dir, vis_dirs[0], 'vis_data', 'vis_image'))
    assert any(p.startswith('relevance_train') for p in pictures)
    assert any(p.startswith('relevance_val') for p in pictures)

    # Stock test.py on the best checkpoint (loading works under torch >= 2.6 via the plugin).
    out = run('test.py', write_config(tmp_path, tree, epochs=3), osp.join(work_dir, best[0]),
              '--work-dir', str(tmp_path / 'test'))
    assert 'relevance/loss' in out and 'accuracy/top1' in out
    tested = float(re.search(r'relevance/loss: ([0-9.]+)', out).group(1))
    assert tested == pytest.approx(logged[best_epoch - 1], abs=1e-4)  # printed with 4 digits

    # Resume for one more epoch.
    out = run('train.py', write_config(tmp_path, tree, epochs=4), '--work-dir', work_dir,
              '--resume')
    assert 'resumed epoch: 3' in out.lower() or 'Epoch(train)   [4]' in out, out[-2000:]
    assert osp.exists(osp.join(work_dir, 'epoch_4.pth'))


def test_validation_results_are_logged_unsmoothed_and_training_losses_smoothed():
    """mmengine's LogProcessor averaged every "loss" key over 10 records, validation epochs
    included: epoch 2 of [1.0, 0.5] was logged as 0.75."""
    from types import SimpleNamespace

    from mmengine.logging import MessageHub

    from robustvit_mm.engine import ExactEvalLogProcessor
    hub = MessageHub.get_instance('test_exact_eval_log_processor')
    runner = SimpleNamespace(message_hub=hub, val_loop=SimpleNamespace(dataloader=[0] * 3),
                             _train_loop=None, epoch=0, iter=0)
    processor = ExactEvalLogProcessor(by_epoch=True)
    for epoch, loss in enumerate([1.0, 0.5, 0.8], start=1):
        hub.update_scalar('val/relevance/loss', loss)
        hub.update_scalar('val/time', 0.1 * epoch)
        runner.epoch = epoch
        tag, text = processor.get_log_after_epoch(runner, 3, 'val')
        assert tag['relevance/loss'] == loss and f'relevance/loss: {loss:.4f}' in text
    assert tag['time'] == pytest.approx(0.2)  # loop timings stay averaged, as in mmengine
    # Training losses are still smoothed over the window.
    for loss in (1.0, 3.0):
        hub.update_scalar('train/loss', loss)
    train_tag = processor._collect_scalars([], runner, 'train')
    assert train_tag['loss'] == pytest.approx(2.0)
