"""Sweeps: one experiment family of the paper, each point trained by mmpretrain's STOCK
``train.py`` and tested by its STOCK ``test.py`` (subprocesses), one work dir per point, resumable.

    sweep = Sweep('appendix-e', 'configs/robustvit/vit-base-p16_robustvit_imagenet-s.py',
                  cfg_options={'load_from': 'checkpoints/vit-base-p16_in1k.pth'})
    records = sweep.run()        # [{point, config, overrides, work_dir, metrics, checkpoint}, ...]

A point is a set of ``--cfg-options`` overrides of the config (so a sweep depends on config keys,
not on the package's internals). Every key path is checked against the loaded config before
anything is launched. Layout under ``work_dirs/<sweep>/``::

    <point>/                      the stock tools' work dir of that point (checkpoints, logs, split)
    <point>/sweep_train.log       stdout/stderr of train.py (appended on every (re)start)
    <point>/sweep_test.log        stdout/stderr of test.py
    <point>/sweep_result.json     the marker: the point's record, written atomically once tested
    sweep_results.json            JSON list of the records of every finished point, in sweep order
    sweep_summary.csv / .md       rows = points, columns = the varied values, then test.py's metrics

A point with a marker is skipped on a rerun; a point whose work dir holds a ``last_checkpoint`` but
no marker (interrupted) resumes its training with ``--resume``, then is tested. Delete a point's
marker to test it again, its folder to train it again from scratch.
"""
import contextlib
import csv
import glob
import json
import os
import os.path as osp
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

from mmengine.config import Config

from ..stock_tools import stock_tool_path

MARKER = 'sweep_result.json'
RESULTS = 'sweep_results.json'
SUMMARY = 'sweep_summary'
TRAIN_LOG, TEST_LOG = 'sweep_train.log', 'sweep_test.log'
TEST_METRICS = 'sweep_test_metrics.json'
LOCK = 'sweep.lock'

# Config keys the families vary. The class-split options are keys of the dataloaders' `dataset`
# (ImageNetSMaskDataset); every dataloader whose dataset has the key gets the same value, so the
# validation/test split stays the complement of the training classes.
SEED_KEY = 'randomness.seed'
LR_KEY = 'optim_wrapper.optimizer.lr'
SPLIT_SEED_OPTION = 'split_seed'
NUM_CLASSES_OPTION = 'num_classes'
NUM_SAMPLES_OPTION = 'num_samples'
CLASS_ORDER_OPTION = 'class_order'  # 'sorted' ignores split_seed
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
# The metric the lr rule of thumb reads: top-1 on the held-out classes (the config's test split).
LR_RULE_METRIC = 'accuracy/top1'
LR_RULE_TOLERANCE = 1.0  # points of top-1


@dataclass
class Point:
    name: str
    overrides: Dict[str, object]


@dataclass(frozen=True)
class Family:
    name: str
    paper: str            # where the experiment is in the paper
    rule: str             # what varies, and how a point is read
    default_values: tuple
    make_points: Callable  # (cfg, values) -> [Point]
    select: Optional[Callable] = None  # (records) -> name of the selected point, or None
    spread: bool = False  # repeats of one setting: the summary adds mean and std rows


# ------------------------------------------------------------------------------------- key paths
def _lookup(cfg, path: str):
    """The value at a dotted ``--cfg-options`` path; ValueError naming the missing part."""
    node, parts = cfg, path.split('.')
    for i, part in enumerate(parts):
        if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif hasattr(node, 'keys') and part in node:  # a Config or a (Config)dict
            node = node[part]
        else:
            where = '.'.join(parts[:i]) or 'the top level'
            known = ', '.join(sorted(map(str, node.keys()))[:40]) if hasattr(node, 'keys') \
                else f'a {type(node).__name__}'
            raise ValueError(f'{path!r}: the config has no key {part!r} under {where} '
                             f'(there: {known})')
    return node


def check_keys(cfg, keys, config: str):
    """Every key path must exist in the loaded config (a typo would otherwise add a dead key and
    the sweep would train N identical points)."""
    errors = []
    for key in keys:
        try:
            _lookup(cfg, key)
        except ValueError as e:
            errors.append(str(e))
    if errors:
        raise ValueError(f'sweep over {config}: unknown config key(s), nothing was launched:\n  '
                         + '\n  '.join(errors))


def dataset_option_paths(cfg, option: str) -> List[str]:
    """``<loader>.dataset.<option>`` for every dataloader whose dataset sets ``option``."""
    paths = [f'{loader}.dataset.{option}' for loader in LOADERS
             if isinstance(cfg.get(loader), dict) and isinstance(cfg[loader].get('dataset'), dict)
             and option in cfg[loader]['dataset']]
    if not paths:
        raise ValueError(f'no dataloader of the config has dataset.{option} (looked at '
                         f'{", ".join(LOADERS)}); this family needs an ImageNet-S mask dataset')
    return paths


# --------------------------------------------------------------------------------------- families
def _ints(values, minimum=0):
    bad = [v for v in values if isinstance(v, bool) or not float(v).is_integer() or v < minimum]
    if bad:
        raise ValueError(f'sweep values {bad} are not integers >= {minimum}')
    return [int(v) for v in values]


def _seed_points(cfg, values):
    return [Point(f'seed{v}', {SEED_KEY: v}) for v in _ints(values)]


def _split_seed_paths(cfg):
    paths = dataset_option_paths(cfg, SPLIT_SEED_OPTION)
    for path in paths:
        dataset = _lookup(cfg, path.rsplit('.', 1)[0])
        if dataset.get(CLASS_ORDER_OPTION, 'shuffled') != 'shuffled':
            # With the literal "first classes in sorted order" every point would be the same split.
            raise ValueError(
                f'{path}: split_seed has no effect with {CLASS_ORDER_OPTION}='
                f'{dataset[CLASS_ORDER_OPTION]!r}; add --cfg-options '
                + ' '.join(f'{p.rsplit(".", 1)[0]}.{CLASS_ORDER_OPTION}=shuffled' for p in paths))
    return paths


def _split_points(cfg, values):
    paths = _split_seed_paths(cfg)
    return [Point(f'split{v}', {p: v for p in paths}) for v in _ints(values)]


def _appendix_e_points(cfg, values):
    paths = _split_seed_paths(cfg)
    return [Point(f'seed{v}', {SEED_KEY: v, **{p: v for p in paths}}) for v in _ints(values)]


def _classes_points(cfg, values):
    paths = dataset_option_paths(cfg, NUM_CLASSES_OPTION)
    return [Point(f'classes{v}', {p: v for p in paths}) for v in _ints(values, 1)]


def _images_points(cfg, values):
    paths = dataset_option_paths(cfg, NUM_SAMPLES_OPTION)
    return [Point(f'images{v}', {p: v for p in paths}) for v in _ints(values, 1)]


def _appendix_g_points(cfg, values):
    if values:
        raise ValueError("appendix-g runs both default grids; give values to 'appendix-g-classes' "
                         "or 'appendix-g-images' instead")
    return _classes_points(cfg, FAMILIES['appendix-g-classes'].default_values) + \
        _images_points(cfg, FAMILIES['appendix-g-images'].default_values)


def _lr_points(cfg, values):
    base = float(_lookup(cfg, LR_KEY))
    if any(float(f) <= 0 for f in values):
        raise ValueError(f'lr-grid factors must be > 0, got {list(values)}')
    points = []
    for factor in values:
        lr = float(f'{base * float(factor):.6g}')
        points.append(Point(f'lr{lr:.3g}', {LR_KEY: lr}))
    return points


def select_lr(records, metric=LR_RULE_METRIC, tolerance=LR_RULE_TOLERANCE):
    """The rule of thumb as applied here: the LARGEST lr whose ``metric`` is within ``tolerance`` of
    the best value of the grid. None when no record has the metric."""
    scored = [r for r in records if isinstance(r['metrics'].get(metric), (int, float))]
    if not scored:
        return None
    best = max(r['metrics'][metric] for r in scored)
    ok = [r for r in scored if r['metrics'][metric] >= best - tolerance]
    return max(ok, key=lambda r: r['overrides'][LR_KEY])['point']


_SPLIT_NOTE = ('The class split is the dataset option `split_seed` of every dataloader (sorted '
               'classes shuffled with that seed; the list is saved as imagenet_s_split.json in the '
               'point\'s work dir).')
FAMILIES = {f.name: f for f in (
    Family('appendix-e', 'Appendix E (seeds and choice of the 500 training classes)',
           'Each point draws other training classes (split_seed = v) and uses training seed v '
           '(randomness.seed; the authors\' class seed chose the classes only, the training seed '
           'makes each point repeatable). Read: mean and spread of each metric over the points '
           '(the mean and std rows of the summary). ' + _SPLIT_NOTE,
           (0, 1, 2), _appendix_e_points, spread=True),
    Family('seeds', 'Appendix E (training seed only)',
           'randomness.seed = v; the training classes stay those of the config.',
           (0, 1, 2), _seed_points, spread=True),
    Family('class-splits', 'Appendix E (choice of classes only)',
           'split_seed = v; the training seed stays that of the config. ' + _SPLIT_NOTE,
           (0, 1, 2), _split_points, spread=True),
    Family('appendix-g-classes', 'Appendix G (number of training classes)',
           'num_classes = v training classes (images per class as in the config); the held-out '
           'classes (validation/test split) are the rest. Defaults are a grid up to the paper\'s '
           '500 chosen here; the paper\'s own grid: its Appendix G (pass it with --values).',
           (100, 200, 300, 400, 500), _classes_points),
    Family('appendix-g-images', 'Appendix G (images per class)',
           'num_samples = v masked images per training class (ImageNet-S919 has 10 per class; the '
           'paper uses 3). Defaults chosen here; the paper\'s grid: its Appendix G.',
           (1, 2, 3, 5, 10), _images_points),
    Family('appendix-g', 'Appendix G (both grids)',
           'The appendix-g-classes points followed by the appendix-g-images points.',
           (), _appendix_g_points),
    Family('lr-grid', 'Section 4 (learning rate per model)',
           'lr = factor x the config\'s lr (each model\'s lr from the authors\' README), factors '
           'v. Rule applied here, this package\'s version of the rule of thumb of the paper\'s '
           'Section 4 (check its wording there): take the LARGEST lr whose top-1 on the '
           f'held-out classes ({LR_RULE_METRIC} of test.py) is within {LR_RULE_TOLERANCE:g} point '
           'of the best point of the grid (this package\'s reading: a larger lr moves relevance '
           'further, until accuracy drops). The selected point is marked in the summary.',
           (0.25, 0.5, 1.0, 2.0, 4.0), _lr_points, select=select_lr),
)}


def describe_families() -> str:
    lines = []
    for f in FAMILIES.values():
        values = ', '.join(map(str, f.default_values)) or '(fixed)'
        lines.append(f'{f.name}: {f.paper}\n    values: {values}\n    {f.rule}')
    return '\n'.join(lines)


# ---------------------------------------------------------------------------------------- running
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


def _atomic_json(path, obj):
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'w') as f:
        json.dump(obj, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _tail(path, n=40):
    try:
        with open(path, errors='replace') as f:
            return ''.join(f.readlines()[-n:])
    except OSError:
        return ''


def _mean_std(values):
    """Mean and sample standard deviation of the numbers in ``values`` ('' when fewer than 2)."""
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(nums) < 2:
        return '', ''
    mean = sum(nums) / len(nums)
    return mean, (sum((v - mean) ** 2 for v in nums) / (len(nums) - 1)) ** 0.5


def _epoch_of(path):
    m = re.search(r'(\d+)\.pth$', path)
    return int(m.group(1)) if m else -1


@contextlib.contextmanager
def _sweep_lock(work_dir):
    """One running sweep per folder: two would train the same point into one work dir. A lock left
    by a process that no longer exists is taken over."""
    path = osp.join(work_dir, LOCK)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                with open(path) as f:
                    pid = int(f.read().strip() or 0)
                os.kill(pid, 0)
            except (ValueError, ProcessLookupError, FileNotFoundError):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)  # stale
                continue
            except PermissionError:
                pass
            raise RuntimeError(f'another sweep (process {pid}) is running in {work_dir} '
                               f'({path}); wait for it or use another --name / --work-dir')
    else:
        raise RuntimeError(f'could not take the sweep lock {path}')
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


@dataclass
class Sweep:
    """One family over one config. Raises ValueError (nothing launched) for an unknown family, a
    malformed point name or a key path the loaded config does not have.

    Args:
        family: A key of :data:`FAMILIES`.
        config: The config every point starts from.
        values: The family's values (default: its ``default_values``).
        cfg_options: ``{key: value}`` applied to every point before its own overrides (data roots,
            ``load_from``, ...); checked against the config too.
        work_dir: Root of the sweep (default ``work_dirs/<name>``).
        name: Sweep name (default ``<config stem>_<family>``).
        checkpoint: ``'best'`` (the config's best checkpoint, the paper's rule; falls back to the
            last one when the config keeps none) or ``'last'``.
        python: Interpreter that runs the stock tools.
    """
    family: str
    config: str
    values: Optional[Sequence] = None
    cfg_options: Dict[str, object] = field(default_factory=dict)
    work_dir: Optional[str] = None
    name: Optional[str] = None
    checkpoint: str = 'best'
    python: str = sys.executable

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f'unknown sweep family {self.family!r}; known: {", ".join(FAMILIES)}')
        if self.checkpoint not in ('best', 'last'):
            raise ValueError(f"checkpoint={self.checkpoint!r}, expected 'best' or 'last'")
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
            if not re.fullmatch(r'[A-Za-z0-9._+-]+', n):
                raise ValueError(f'sweep point name {n!r} is not a safe folder name')
        if len(set(names)) != len(names):
            raise ValueError(f'sweep {self.family}: duplicate point names {names}')
        check_keys(cfg, {k for p in self.points for k in p.overrides}, self.config)
        self._cfg = cfg
        self.name = self.name or f'{osp.splitext(osp.basename(self.config))[0]}_{self.family}'
        self.work_dir = self.work_dir or osp.join('work_dirs', self.name)

    # --------------------------------------------------------------------------------- commands
    def overrides(self, point: Point) -> Dict[str, object]:
        return {**self.cfg_options, **point.overrides}

    def point_dir(self, point: Point) -> str:
        return osp.join(self.work_dir, point.name)

    def _options(self, point, extra=None):
        items = {**self.overrides(point), **(extra or {})}
        return ['--cfg-options'] + [f'{k}={format_cfg_value(v)}' for k, v in items.items()]

    def train_command(self, point: Point, resume=False, extra=None) -> List[str]:
        cmd = [self.python, stock_tool_path('train.py'), self.config,
               '--work-dir', self.point_dir(point)]
        return cmd + (['--resume'] if resume else []) + self._options(point, extra)

    def test_command(self, point: Point, checkpoint: str) -> List[str]:
        wd = self.point_dir(point)
        return [self.python, stock_tool_path('test.py'), self.config, checkpoint,
                '--work-dir', osp.join(wd, 'test'), '--out', osp.join(wd, TEST_METRICS),
                '--out-item', 'metrics'] + self._options(point)

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

    def _launch(self, cmd, log_path, env, what, point):
        with open(log_path, 'a') as log:
            log.write(f'\n$ {" ".join(cmd)}\n')
            log.flush()
            rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        if rc != 0:
            raise RuntimeError(f'sweep point {point.name}: {what} exited with status {rc}; '
                               f'full log {log_path}; its end:\n{_tail(log_path)}')

    def run_point(self, point: Point, env=None, log=print) -> dict:
        wd = self.point_dir(point)
        os.makedirs(wd, exist_ok=True)
        resume = osp.isfile(osp.join(wd, 'last_checkpoint'))
        log(f'    train.py{" --resume" if resume else ""} -> {osp.join(wd, TRAIN_LOG)}')
        self._launch(self.train_command(point, resume=resume), osp.join(wd, TRAIN_LOG), env,
                     'train.py', point)
        ckpt = self.find_checkpoint(point)
        log(f'    test.py {osp.basename(ckpt)} -> {osp.join(wd, TEST_LOG)}')
        metrics_path = osp.join(wd, TEST_METRICS)
        if osp.exists(metrics_path):
            os.remove(metrics_path)
        self._launch(self.test_command(point, ckpt), osp.join(wd, TEST_LOG), env, 'test.py', point)
        with open(metrics_path) as f:
            metrics = json.load(f)
        record = dict(point=point.name, config=self.config, overrides=self.overrides(point),
                      work_dir=wd, metrics=metrics, checkpoint=ckpt, family=self.family)
        _atomic_json(osp.join(wd, MARKER), record)
        return record

    def run(self, env=None, log=print, keep_going=False) -> List[dict]:
        """Run every unfinished point in order; write the results and the summary; return the
        records of the finished points. With ``keep_going`` a failed point is reported and the
        sweep goes on (a RuntimeError at the end lists the failures)."""
        os.makedirs(self.work_dir, exist_ok=True)
        with _sweep_lock(self.work_dir):
            return self._run(env, log, keep_going)

    def _run(self, env, log, keep_going):
        start, n, failed = time.time(), len(self.points), []
        log(f'sweep {self.name}: {self.spec.paper}, {n} points -> {self.work_dir}')
        for i, point in enumerate(self.points, 1):
            head = f'[{i}/{n}] {point.name}'
            if self.load_marker(point) is not None:
                log(f'{head}: finished before, skipped')
                continue
            log(f'{head}: {", ".join(f"{k}={v}" for k, v in point.overrides.items())}')
            t0 = time.time()
            try:
                record = self.run_point(point, env=env, log=log)
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
        ``tools/robustness_report.py`` (and ``models`` of ``apis.report.run_report``), led by the
        config's pretrained weights (``load_from``) as the baseline the report compares against.
        A point's config is the one its train.py run dumped (overrides included) when present."""
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

    def write_summary(self) -> List[dict]:
        """``sweep_results.json`` (list of records) and ``sweep_summary.{csv,md}`` for the finished
        points."""
        records = self.records()
        _atomic_json(osp.join(self.work_dir, RESULTS), records)
        varied = []  # short names of the varied values, e.g. split_seed, seed, lr
        for p in self.points:
            for k in p.overrides:
                short = k.rsplit('.', 1)[-1]
                if short not in [s for s, _ in varied]:
                    varied.append((short, k))
        metrics = []
        for r in records:
            metrics += [k for k in r['metrics'] if k not in metrics]
        selected = self.spec.select(records) if self.spec.select else None
        header = ['point'] + [s for s, _ in varied] + metrics + (['selected'] if self.spec.select
                                                                 else [])
        rows = []
        for r in records:
            row = [r['point']] + [r['overrides'].get(k, '') for _, k in varied] + \
                [r['metrics'].get(m, '') for m in metrics]
            if self.spec.select:
                row.append('yes' if r['point'] == selected else '')
            rows.append(row)
        with open(osp.join(self.work_dir, SUMMARY + '.csv'), 'w', newline='') as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)
        fmt = lambda v: f'{v:.4g}' if isinstance(v, float) else str(v)  # noqa: E731
        lines = [f'# Sweep {self.name}', '',
                 f'Family `{self.family}`: {self.spec.paper}. Config `{self.config}`.', '',
                 f'Rule: {self.spec.rule}', '',
                 f'{len(records)} of {len(self.points)} points finished.', '',
                 '| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
        lines += ['| ' + ' | '.join(fmt(v) for v in row) + ' |' for row in rows]
        if self.spec.spread and len(records) >= 2:
            stats = [_mean_std([r['metrics'].get(m) for r in records]) for m in metrics]
            pad = [''] * len(varied)
            lines.append('| **mean** | ' + ' | '.join(pad + [fmt(m) for m, _ in stats]) + ' |')
            lines.append('| **std** | ' + ' | '.join(pad + [fmt(sd) for _, sd in stats]) + ' |')
        with open(osp.join(self.work_dir, SUMMARY + '.md'), 'w') as f:
            f.write('\n'.join(lines) + '\n')
        return records
