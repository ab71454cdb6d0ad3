"""Stop training loudly the moment a loss term stops being finite (no NaN ever trains on).

mmengine trains on whatever the loss is: a NaN from one bad batch is averaged into every weight by
the optimizer, later losses are all NaN, the "best" checkpoint rule (``val_loss <= best``) never
fires again, and the run goes on for days. This hook checks every logged value of every training
iteration (``loss``, ``loss_background``, ``loss_foreground``, ``loss_cls``, ``relevance_iou``, ...) and
the per-sample validation terms, and raises ``FloatingPointError`` naming the iteration, the
non-finite terms and the samples of the batch (``sample_idx`` and image path).

Order: the optimizer step of the offending iteration has already run when ``after_train_iter`` is
called (mmengine's ``train_step`` does forward, backward and step), so the weights in memory are
spoiled; the hook runs before the logger and checkpoint hooks (priority ``ABOVE_NORMAL``) and the
run stops before anything is written: the checkpoints already on disk and ``last_checkpoint`` are
those of the last good epoch, and ``--resume`` restarts from there.

Distributed: each rank sees only its own batch's losses (mmengine 0.10.7 does not reduce the logged
values across ranks), so the verdict is all-reduced (max) and every rank stops at the same
iteration, each naming its own samples.

Registered in the runtime base's ``default_hooks`` (key ``nonfinite``); ``enable=False`` turns it
off (``--cfg-options default_hooks.nonfinite.enable=False``), ``check_val=False`` checks training
only. (mmengine accepts ``None`` only for its own default hook names.)
"""
import torch
from mmengine.dist import all_reduce, get_dist_info, is_distributed
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS


def _value(value):
    if torch.is_tensor(value):
        return value.detach().float().cpu()
    try:
        return torch.as_tensor(value, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        return None  # not numeric (a message hub may carry strings): nothing to check


def non_finite_terms(values):
    """``{name: value}`` of the numeric entries of ``values`` that hold a NaN or an infinity."""
    bad = {}
    for name, value in (values or {}).items():
        tensor = _value(value)
        if tensor is not None and tensor.numel() and not bool(torch.isfinite(tensor).all()):
            bad[name] = float(tensor.flatten()[~torch.isfinite(tensor.flatten())][0])
    return bad


def describe_samples(data_samples, limit=16):
    """``sample_idx N (path)`` for the data samples of a batch (at most ``limit``)."""
    out = []
    for sample in list(data_samples or [])[:limit]:
        get = sample.get if hasattr(sample, 'get') else (lambda k, d=None: d)
        idx = get('sample_idx', None)
        path = get('img_path', None)
        parts = []
        if idx is not None:
            parts.append(f'sample_idx {idx}')
        if path is not None:
            parts.append(str(path))
        out.append(' '.join(parts) if parts else repr(type(sample).__name__))
    more = len(data_samples or []) - limit
    if more > 0:
        out.append(f'... and {more} more')
    return out


def _any_rank(flag):
    """True when ``flag`` is True on any rank (one tiny all-reduce when distributed)."""
    if not is_distributed():
        return flag
    verdict = torch.tensor([1.0 if flag else 0.0])
    all_reduce(verdict, op='max')
    return bool(verdict.item() > 0)


def _fmt(terms):
    return ', '.join(f'{k}={v}' for k, v in terms.items())


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Raise ``FloatingPointError`` when a training loss term or a validation loss is not finite.

    Args:
        check_val (bool): also check the per-sample validation terms that a relevance-guided
            classifier attaches (``data_sample.relevance_losses``) and the validation metrics, and
            raise at the end of a validation epoch that produced a non-finite value. Test runs
            (``test.py``) only log the offending samples as an error, so the metrics still print.
        max_samples (int): at most this many samples are listed in the message.
        enable (bool): False turns every check off.
    """

    priority = 'ABOVE_NORMAL'  # before LoggerHook (BELOW_NORMAL) and CheckpointHook (VERY_LOW)

    def __init__(self, check_val=True, max_samples=16, enable=True):
        self.enable = enable
        self.check_val = check_val and enable
        self.max_samples = max_samples
        self._bad_eval = []

    # ------------------------------------------------------------------ training
    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if not self.enable:
            return
        bad = non_finite_terms(outputs)
        if not _any_rank(bool(bad)):
            return
        rank, world_size = get_dist_info()
        where = f'iteration {runner.iter + 1}'
        if getattr(runner.train_loop, '_max_epochs', None) is not None:
            where += f' (epoch {runner.epoch + 1}, batch {batch_idx + 1} of the epoch)'
        who = f' on rank {rank} of {world_size}' if world_size > 1 else ''
        samples = describe_samples((data_batch or {}).get('data_samples'), self.max_samples)
        if bad:
            what = f'non-finite training loss at {where}{who}: {_fmt(bad)}'
            batch = f'Samples of this batch: {"; ".join(samples) or "unknown"}.'
        else:
            what = (f'non-finite training loss at {where} on another rank (this rank {rank}\'s '
                    'losses are finite)')
            batch = f'Samples of this rank\'s batch: {"; ".join(samples) or "unknown"}.'
        last = self._last_checkpoint(runner)
        raise FloatingPointError(
            f'NonFiniteLossHook: {what}. {batch} Training stopped before anything of this '
            f'iteration was saved{"; the last checkpoint is " + last if last else ""}. Check those '
            'images and masks, the learning rate and the loaded weights; resume with --resume.')

    @staticmethod
    def _last_checkpoint(runner):
        try:
            with open(f'{runner.work_dir}/last_checkpoint') as f:
                return f.read().strip() or None
        except OSError:
            return None

    # ---------------------------------------------------------------- validation
    def _record(self, data_batch, outputs):
        for sample in outputs or []:
            terms = sample.get('relevance_losses') if hasattr(sample, 'get') else None
            bad = non_finite_terms(terms)
            if bad:
                self._bad_eval.append(f'{describe_samples([sample])[0]}: {_fmt(bad)}')

    def before_val_epoch(self, runner):
        self._bad_eval = []

    def before_test_epoch(self, runner):
        self._bad_eval = []

    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self.check_val:
            self._record(data_batch, outputs)

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self.check_val:
            self._record(data_batch, outputs)

    def _eval_report(self, metrics):
        bad_metrics = non_finite_terms(metrics)
        samples = self._bad_eval[:self.max_samples]
        if len(self._bad_eval) > self.max_samples:
            samples.append(f'... and {len(self._bad_eval) - self.max_samples} more')
        return bad_metrics, samples

    def after_val_epoch(self, runner, metrics=None):
        if not self.check_val:
            return
        bad_metrics, samples = self._eval_report(metrics)
        if not _any_rank(bool(bad_metrics or samples)):
            return
        raise FloatingPointError(
            f'NonFiniteLossHook: non-finite validation result after epoch {runner.epoch}: '
            f'{_fmt(bad_metrics) or "metrics finite"}. Samples with non-finite loss terms'
            f'{" on this rank" if is_distributed() else ""}: {"; ".join(samples) or "none here"}. '
            'The best-checkpoint rule cannot compare a NaN, so training is stopped.')

    def after_test_epoch(self, runner, metrics=None):
        if not self.check_val:
            return
        bad_metrics, samples = self._eval_report(metrics)
        if bad_metrics or samples:
            runner.logger.error(
                f'NonFiniteLossHook: non-finite test result: {_fmt(bad_metrics) or "metrics finite"}'
                f'. Samples with non-finite loss terms: {"; ".join(samples) or "none"}.')


__all__ = ['NonFiniteLossHook', 'non_finite_terms', 'describe_samples']
