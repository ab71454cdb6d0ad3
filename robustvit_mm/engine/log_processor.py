"""Log validation and test results exactly as the evaluator computed them.

mmengine's ``LogProcessor`` averages every key that matches ``mean_pattern`` (any name containing
"loss" or "time") over the last ``window_size`` records, and validation results are records too:
with one record per epoch, the "epoch 3" validation loss in the log, ``scalars.json`` and TensorBoard
was the mean of epochs 1-3, while the best-checkpoint rule compared the exact epoch-3 value. The
curve's minimum then pointed at another epoch than the checkpoint kept.
"""
from mmengine.runner import LogProcessor
from mmpretrain.registry import LOG_PROCESSORS

# Per-iteration timings of the evaluation loop: averaged over the epoch, as mmengine does.
TIMING_KEYS = ('time', 'data_time')


@LOG_PROCESSORS.register_module()
class ExactEvalLogProcessor(LogProcessor):
    """``LogProcessor`` whose validation/test results are the evaluator's values, never smoothed.

    Training logs are unchanged (losses smoothed over ``window_size`` iterations, as mmengine does).
    In ``val``/``test`` mode every scalar except the loop timings and the keys named in
    ``custom_cfg`` is logged as its latest value, i.e. the metric of this evaluation.
    All arguments are those of :class:`mmengine.runner.LogProcessor`.
    """

    def _collect_scalars(self, custom_cfg, runner, mode, reserve_prefix=False):
        tag = super()._collect_scalars(custom_cfg, runner, mode, reserve_prefix)
        if mode not in ('val', 'test'):
            return tag
        custom = {cfg.get('log_name', cfg['data_src']) for cfg in custom_cfg}
        prefix = f'{mode}/'
        for key, buffer in runner.message_hub.log_scalars.items():
            if not key.startswith(prefix):
                continue
            short = key[len(prefix):]
            if short in TIMING_KEYS or short in custom or key in custom:
                continue
            tag[key if reserve_prefix else short] = buffer.current()
        return tag


__all__ = ['ExactEvalLogProcessor']
