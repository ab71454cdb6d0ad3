"""Sweeps: one experiment family of the paper (:mod:`.sweep_families`), each point trained by
mmpretrain's STOCK ``train.py`` and tested by its STOCK ``test.py`` (subprocesses,
:mod:`.sweep_processes`), one work dir per point, resumable.

    sweep = Sweep('appendix-e', 'configs/robustvit/vit-base-p16_robustvit_imagenet-s.py',
                  cfg_options={'load_from': 'checkpoints/vit-base-p16_in1k.pth'})
    records = sweep.run()        # [{point, config, overrides, work_dir, metrics, checkpoint, ...}]

Layout under ``work_dirs/<sweep>/``::

    <point>/                      the stock tools' work dir of that point (checkpoints, logs, split)
    <point>/sweep_train.log       stdout/stderr of train.py (appended on every (re)start)
    <point>/sweep_test.log        stdout/stderr of test.py
    <point>/sweep_result.json     the marker: the point's record, written atomically once tested
    reference/                    lr-grid with the paper's rule: test.py of the pretrained model
    sweep_results.json            JSON list of the records of every finished point, in sweep order
    sweep_summary.csv / .md       rows = points, columns = the varied values, the tested checkpoint,
                                  the images per class used, then test.py's metrics

A point with a marker is skipped on a rerun (tested again, without training, when the marker
records another ``checkpoint`` choice); a point whose work dir holds a ``last_checkpoint`` but no
marker (interrupted) resumes its training with ``--resume``, then is tested. Delete a point's
marker to test it again, its folder to train it again from scratch.
"""
import csv
import glob
import json
import os
import os.path as osp
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from mmengine.config import Config

from ..stock_tools import stock_tool_path
from ..utils.fileio import atomic_open, atomic_write_json, atomic_write_text
from ..utils.stats import mean_std
from .sweep_families import (DEFAULT_LR_RULE, FAMILIES, LR_RULES, NUM_SAMPLES_OPTION, Point,
                             check_keys)
from .sweep_processes import run_child, stop_signals_raise, sweep_lock

MARKER = 'sweep_result.json'
RESULTS = 'sweep_results.json'
SUMMARY = 'sweep_summary'
TRAIN_LOG, TEST_LOG = 'sweep_train.log', 'sweep_test.log'
TEST_METRICS = 'sweep_test_metrics.json'
REFERENCE = 'reference'   # the folder of the pretrained model's test (the paper's lr rule)
CHECKPOINTS = {
    'best': 'best: the config\'s best checkpoint (the released code\'s rule: the lowest validation '
            'loss, docs/faithfulness.md#best-checkpoint; the last one when the config keeps none)',
    'last': 'last: the checkpoint of the last epoch',
}


def format_cfg_value(value) -> str:
    """A value as mmengine's ``DictAction`` (``--cfg-options key=value``) parses it back."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        inner = ','.join(format_cfg_value(v) for v in value)
        if isinstance(value, list):
            return f'[{inner}]'
        return f'({inner},)' if len(value) == 1 else f'({inner})'
    if isinstance(value, str):
        return value
    raise TypeError(f'--cfg-options cannot express {value!r} ({type(value).__name__})')


def _tail(path, n=40):
    try:
        with open(path, errors='replace') as f:
            return ''.join(f.readlines()[-n:])
    except OSError:
        return ''


def _epoch_of(path):
    m = re.search(r'(\d+)\.pth$', path)
    return int(m.group(1)) if m else -1


def images_per_class_used(config_path) -> Optional[str]:
    """How many training images per class a point's (dumped) config really uses, as its training
    dataset counts them (``ImageNetSMaskDataset.masks_per_class``): ``'3'``, or ``'2-3'`` when some
    class holds fewer than ``num_samples``. None when the training dataset has no ``num_samples``
    option."""
    from mmpretrain.registry import DATASETS
    dataset_cfg = Config.fromfile(config_path).train_dataloader.dataset.to_dict()
    if NUM_SAMPLES_OPTION not in dataset_cfg:
        return None
    dataset = DATASETS.build(dict(dataset_cfg, pipeline=[]))
    dataset.full_init()
    low, high = dataset.masks_per_class['min'], dataset.masks_per_class['max']
    return str(low) if low == high else f'{low}-{high}'


@dataclass
class Sweep:
    """One family over one config. Raises ValueError (nothing launched) for an unknown family, a
    malformed point name, a key path the loaded config does not have, or a ``cfg_options`` key the
    family sets itself.

    Args:
        family: A key of :data:`FAMILIES`.
        config: The config every point starts from.
        values: The family's values (default: its ``default_values``).
        cfg_options: ``{key: value}`` applied to every point before its own overrides (data roots,
            ``load_from``, ...); checked against the config too.
        work_dir: Root of the sweep (default ``work_dirs/<name>``).
        name: Sweep name (default ``<config stem>_<family>``).
        checkpoint: ``'best'`` or ``'last'`` (:data:`CHECKPOINTS`).
        lr_rule: For ``lr-grid``: a key of :data:`LR_RULES` (default ``'paper'``: Section 4's rule,
            which also tests the pretrained model, the config's ``load_from``).
        python: Interpreter that runs the stock tools.
    """
    family: str
    config: str
    values: Optional[Sequence] = None
    cfg_options: Dict[str, object] = field(default_factory=dict)
    work_dir: Optional[str] = None
    name: Optional[str] = None
    checkpoint: str = 'best'
    lr_rule: str = DEFAULT_LR_RULE
    python: str = sys.executable

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f'unknown sweep family {self.family!r}; known: {", ".join(FAMILIES)}')
        if self.checkpoint not in CHECKPOINTS:
            raise ValueError(f"checkpoint={self.checkpoint!r}, expected 'best' or 'last'")
        if self.lr_rule not in LR_RULES:
            raise ValueError(f'lr_rule={self.lr_rule!r}; known: {", ".join(LR_RULES)}')
        if not osp.isfile(self.config):
            raise FileNotFoundError(f'sweep config {self.config!r} does not exist')
        self.spec = FAMILIES[self.family]
        cfg = Config.fromfile(self.config)
        check_keys(cfg, self.cfg_options, self.config)
        if self.cfg_options:
            cfg.merge_from_dict(dict(self.cfg_options))
        values = self.spec.default_values if self.values is None else tuple(self.values)
        self.points = self.spec.make_points(cfg, values)
        if not self.points:
            raise ValueError(f'sweep {self.family}: no points (values {values!r})')
        names = [p.name for p in self.points]
        for n in names:
            if not re.fullmatch(r'[A-Za-z0-9._+-]+', n) or n == REFERENCE:
                raise ValueError(f'sweep point name {n!r} is not a safe folder name')
        if len(set(names)) != len(names):
            raise ValueError(f'sweep {self.family}: duplicate point names {names}')
        varied = {k for p in self.points for k in p.overrides}
        clash = sorted(varied & set(self.cfg_options))
        if clash:
            raise ValueError(f'--cfg-options {", ".join(clash)}: the family {self.family} sets '
                             'this key itself, one value per point; leave it out (choose the '
                             'points with --values)')
        check_keys(cfg, varied, self.config)
        self._cfg = cfg
        self.uses_reference = self.spec.selects_lr and self.lr_rule == 'paper'
        if self.uses_reference and not cfg.get('load_from'):
            raise ValueError(f'lr-grid with the paper\'s rule compares every lr with the pretrained '
                             f'model, and {self.config} has no load_from: add --cfg-options '
                             'load_from=<pretrained weights>, or choose --lr-rule near-best')
        self.name = self.name or f'{osp.splitext(osp.basename(self.config))[0]}_{self.family}'
        self.work_dir = self.work_dir or osp.join('work_dirs', self.name)

    @property
    def rule(self) -> str:
        """The family's rule, with the learning-rate rule in use."""
        if not self.spec.selects_lr:
            return self.spec.rule
        return f'{self.spec.rule} lr rule {self.lr_rule!r}: {LR_RULES[self.lr_rule][1]}.'

    # --------------------------------------------------------------------------------- commands
    def overrides(self, point: Point) -> Dict[str, object]:
        return {**self.cfg_options, **point.overrides}

    def point_dir(self, point: Point) -> str:
        return osp.join(self.work_dir, point.name)

    def _options(self, overrides, extra=None):
        items = {**overrides, **(extra or {})}
        return ['--cfg-options'] + [f'{k}={format_cfg_value(v)}' for k, v in items.items()] \
            if items else []

    def train_command(self, point: Point, resume=False, extra=None) -> List[str]:
        cmd = [self.python, stock_tool_path('train.py'), self.config,
               '--work-dir', self.point_dir(point)]
        return cmd + (['--resume'] if resume else []) + self._options(self.overrides(point), extra)

    def _test_command(self, work_dir, checkpoint, overrides) -> List[str]:
        return [self.python, stock_tool_path('test.py'), self.config, checkpoint,
                '--work-dir', osp.join(work_dir, 'test'), '--out', osp.join(work_dir, TEST_METRICS),
                '--out-item', 'metrics'] + self._options(overrides)

    def test_command(self, point: Point, checkpoint: str) -> List[str]:
        return self._test_command(self.point_dir(point), checkpoint, self.overrides(point))

    def reference_command(self) -> List[str]:
        """test.py of the pretrained model (``load_from``) on the validation split of the points."""
        return self._test_command(osp.join(self.work_dir, REFERENCE), self._cfg.load_from,
                                  self.cfg_options)

    def plan(self) -> List[str]:
        """What :meth:`run` would launch, as shell lines (checkpoints not yet known in <...>)."""
        lines = []
        if self.uses_reference:
            lines += [f'{REFERENCE}: the pretrained model, the lr rule\'s reference point',
                      '    ' + ' '.join(self.reference_command())]
        for i, point in enumerate(self.points, 1):
            lines += [f'[{i}/{len(self.points)}] {point.name}: {point.overrides}',
                      '    ' + ' '.join(self.train_command(point)),
                      '    ' + ' '.join(self.test_command(
                          point, f'<{self.checkpoint} checkpoint of {self.point_dir(point)}>'))]
        return lines

    def find_checkpoint(self, point: Point) -> str:
        wd = self.point_dir(point)
        if self.checkpoint == 'best':
            best = sorted(glob.glob(osp.join(wd, 'best_*.pth')), key=_epoch_of)
            if best:
                return best[-1]
        last = osp.join(wd, 'last_checkpoint')
        if osp.isfile(last):
            with open(last) as f:
                path = f.read().strip()
            if osp.isfile(path):
                return path
        raise FileNotFoundError(f'sweep point {point.name}: training left no checkpoint in {wd}')

    # ------------------------------------------------------------------------------------- state
    def load_marker(self, point: Point) -> Optional[dict]:
        path = osp.join(self.point_dir(point), MARKER)
        if not osp.isfile(path):
            return None
        with open(path) as f:
            record = json.load(f)
        if record.get('overrides') != json.loads(json.dumps(self.overrides(point))) or \
                osp.abspath(record.get('config', '')) != osp.abspath(self.config):
            raise ValueError(
                f'{path} records another run (config {record.get("config")}, overrides '
                f'{record.get("overrides")}) than this sweep\'s point {point.name} (config '
                f'{self.config}, overrides {self.overrides(point)}): use another --name or '
                '--work-dir, or delete that folder')
        return record

    def _launch(self, cmd, log_path, env, what, name, lock):
        with open(log_path, 'a') as log:
            log.write(f'\n$ {" ".join(cmd)}\n')
            log.flush()
            rc = run_child(cmd, log, env, lock)
        if rc != 0:
            raise RuntimeError(f'sweep point {name}: {what} exited with status {rc}; '
                               f'full log {log_path}; its end:\n{_tail(log_path)}')

    def _test(self, work_dir, cmd, env, name, lock):
        metrics_path = osp.join(work_dir, TEST_METRICS)
        if osp.exists(metrics_path):
            os.remove(metrics_path)
        self._launch(cmd, osp.join(work_dir, TEST_LOG), env, 'test.py', name, lock)
        with open(metrics_path) as f:
            return json.load(f)

    def run_point(self, point: Point, lock, env=None, log=print, trained=False) -> dict:
        """Train (unless ``trained``: a finished point tested again) and test one point."""
        wd = self.point_dir(point)
        os.makedirs(wd, exist_ok=True)
        if not trained:
            resume = osp.isfile(osp.join(wd, 'last_checkpoint'))
            log(f'    train.py{" --resume" if resume else ""} -> {osp.join(wd, TRAIN_LOG)}')
            self._launch(self.train_command(point, resume=resume), osp.join(wd, TRAIN_LOG), env,
                         'train.py', point.name, lock)
        ckpt = self.find_checkpoint(point)
        log(f'    test.py {osp.basename(ckpt)} ({self.checkpoint}) -> {osp.join(wd, TEST_LOG)}')
        metrics = self._test(wd, self.test_command(point, ckpt), env, point.name, lock)
        dumped = osp.join(wd, osp.basename(self.config))
        record = dict(point=point.name, config=self.config, overrides=self.overrides(point),
                      work_dir=wd, metrics=metrics, checkpoint=ckpt,
                      tested_checkpoint=self.checkpoint, family=self.family,
                      images_per_class=images_per_class_used(
                          dumped if osp.isfile(dumped) else self.config))
        atomic_write_json(osp.join(wd, MARKER), record)
        return record

    def reference(self, lock=None, env=None, log=print) -> Optional[dict]:
        """The pretrained model's test.py metrics (tested once, then read from its marker)."""
        if not self.uses_reference:
            return None
        wd = osp.join(self.work_dir, REFERENCE)
        path = osp.join(wd, MARKER)
        if osp.isfile(path):
            with open(path) as f:
                record = json.load(f)
            if record.get('checkpoint') == self._cfg.load_from and \
                    record.get('overrides') == json.loads(json.dumps(self.cfg_options)):
                return record
        if lock is None:
            return None
        os.makedirs(wd, exist_ok=True)
        log(f'{REFERENCE}: test.py of the pretrained model {self._cfg.load_from} -> '
            f'{osp.join(wd, TEST_LOG)}')
        metrics = self._test(wd, self.reference_command(), env, REFERENCE, lock)
        record = dict(point=REFERENCE, config=self.config, overrides=self.cfg_options,
                      work_dir=wd, metrics=metrics, checkpoint=self._cfg.load_from)
        atomic_write_json(path, record)
        return record

    def run(self, env=None, log=print, keep_going=False) -> List[dict]:
        """Run every unfinished point in order; write the results and the summary; return the
        records of the finished points. With ``keep_going`` a failed point is reported and the
        sweep goes on (a RuntimeError at the end lists the failures). A stop signal raises
        :class:`~.sweep_processes.SweepStopped` once the running child has stopped."""
        os.makedirs(self.work_dir, exist_ok=True)
        with stop_signals_raise(), sweep_lock(self.work_dir) as lock:
            return self._run(lock, env, log, keep_going)

    def _run(self, lock, env, log, keep_going):
        start, n, failed = time.time(), len(self.points), []
        log(f'sweep {self.name}: {self.spec.paper}, {n} points -> {self.work_dir}')
        self.reference(lock, env, log)
        for i, point in enumerate(self.points, 1):
            head = f'[{i}/{n}] {point.name}'
            marker = self.load_marker(point)
            if marker is not None and marker.get('tested_checkpoint') == self.checkpoint:
                log(f'{head}: finished before, skipped')
                continue
            retest = marker is not None
            log(f'{head}: ' + (f'trained before, tested again with the {self.checkpoint} '
                               'checkpoint' if retest else
                               ', '.join(f'{k}={v}' for k, v in point.overrides.items())))
            t0 = time.time()
            try:
                record = self.run_point(point, lock, env=env, log=log, trained=retest)
            except (RuntimeError, FileNotFoundError) as e:
                if not keep_going:
                    raise
                failed.append(f'{point.name}: {e}')
                log(f'{head}: FAILED ({e})')
                continue
            shown = ', '.join(f'{k}={v:.4g}' for k, v in record['metrics'].items()
                              if isinstance(v, (int, float)))
            log(f'{head}: done in {time.time() - t0:.1f} s (sweep {time.time() - start:.1f} s) '
                f'{shown}')
        records = self.write_summary()
        if failed:
            raise RuntimeError(f'sweep {self.name}: {len(failed)} point(s) failed:\n'
                               + '\n'.join(failed))
        return records

    # ----------------------------------------------------------------------------------- output
    def report_models(self, records=None, pretrained=True) -> List[tuple]:
        """``(name, config, checkpoint)`` per finished point, the ``--model`` triples of
        ``tools/robustness_report.py``, led by the config's pretrained weights (``load_from``) as
        the baseline the report compares against. A point's config is the one its train.py run
        dumped (overrides included) when present."""
        models = []
        load_from = self._cfg.get('load_from')
        if pretrained and load_from:
            models.append(('pretrained', self.config, load_from))
        for r in self.records() if records is None else records:
            dumped = osp.join(r['work_dir'], osp.basename(self.config))
            models.append((r['point'], dumped if osp.isfile(dumped) else self.config,
                           r['checkpoint']))
        return models

    def report_command(self, data_root='data', out=None) -> List[str]:
        """The robustness report over every finished point, as a command line."""
        cmd = ['python', 'tools/robustness_report.py', '--data-root', data_root,
               '--out', out or osp.join(self.work_dir, 'report')]
        for model in self.report_models():
            cmd += ['--model', *model]
        return cmd

    def records(self) -> List[dict]:
        return [r for r in (self.load_marker(p) for p in self.points) if r is not None]

    def selected_point(self, records) -> Optional[str]:
        if not self.spec.selects_lr:
            return None
        select = LR_RULES[self.lr_rule][0]
        reference = self.reference()
        if self.uses_reference and reference is None:
            return None   # the pretrained model is not tested yet
        return select(records, reference['metrics'] if reference else None)

    def write_summary(self) -> List[dict]:
        """``sweep_results.json`` (list of records) and ``sweep_summary.{csv,md}`` for the finished
        points."""
        records = self.records()
        atomic_write_json(osp.join(self.work_dir, RESULTS), records)
        varied = []  # short names of the varied values, e.g. split_seed, seed, lr
        for p in self.points:
            for k in p.overrides:
                short = k.rsplit('.', 1)[-1]
                if short not in [s for s, _ in varied]:
                    varied.append((short, k))
        metrics = []
        for r in records:
            metrics += [k for k in r['metrics'] if k not in metrics]
        reference = self.reference()
        selected = self.selected_point(records)
        header = ['point'] + [s for s, _ in varied] + ['checkpoint', 'images/class used'] + \
            metrics + (['selected'] if self.spec.selects_lr else [])
        rows = []
        for r in records:
            row = [r['point']] + [r['overrides'].get(k, '') for _, k in varied] + \
                [f'{r["tested_checkpoint"]} ({osp.basename(r["checkpoint"])})',
                 r['images_per_class'] or ''] + [r['metrics'].get(m, '') for m in metrics]
            if self.spec.selects_lr:
                row.append('yes' if r['point'] == selected else '')
            rows.append(row)
        if reference:
            rows.insert(0, [f'{REFERENCE} (pretrained)'] + [''] * len(varied) +
                        [osp.basename(reference['checkpoint']), ''] +
                        [reference['metrics'].get(m, '') for m in metrics] + [''])
        with atomic_open(osp.join(self.work_dir, SUMMARY + '.csv'), 'w') as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)
        fmt = lambda v: f'{v:.4g}' if isinstance(v, float) else str(v)  # noqa: E731
        tested = sorted({r['tested_checkpoint'] for r in records})
        lines = [f'# Sweep {self.name}', '',
                 f'Family `{self.family}`: {self.spec.paper}. Config `{self.config}`.', '',
                 f'Rule: {self.rule}', '',
                 'Tested checkpoint: ' + ('; '.join(CHECKPOINTS[t] for t in tested) or '-'), '',
                 f'{len(records)} of {len(self.points)} points finished.', '']
        if self.spec.selects_lr:
            lines += [f'Selected: {selected}' if selected else
                      'Selected: none (no point meets the rule)', '']
        lines += ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
        lines += ['| ' + ' | '.join(fmt(v) for v in row) + ' |' for row in rows]
        if self.spec.spread and len(records) >= 2:
            stats = [self._spread([r['metrics'].get(m) for r in records]) for m in metrics]
            pad = [''] * (len(varied) + 2)
            lines.append('| **mean** | ' + ' | '.join(pad + [fmt(m) for m, _ in stats]) + ' |')
            lines.append('| **std** | ' + ' | '.join(pad + [fmt(sd) for _, sd in stats]) + ' |')
        atomic_write_text(osp.join(self.work_dir, SUMMARY + '.md'), '\n'.join(lines) + '\n')
        return records

    @staticmethod
    def _spread(values):
        """Mean and std of a metric over the points that report it ('' when fewer than 2)."""
        nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(nums) < 2:
            return '', ''
        return mean_std(nums)
