"""The robustness report: evaluate models on every shifted set found under a data root, merge runs
done elsewhere, and write one table (Markdown, CSV), a chart (PNG and the visualizer's backends),
the paper's tables and Figure 4 beside the published numbers (:mod:`.paper_layout`), the
per-class changes (:mod:`.report_per_class`) and the example galleries of Figures 2, 3/6 and 15
(:mod:`.report_gallery`). What to do is one :class:`ReportOptions`.

Each set is evaluated with its provided config ``configs/robustness/<set>[_standard].py`` (where the
set lives, its dataset and metric: the configs and dataset classes are the one home of that
knowledge) through mmengine's ``Runner.from_cfg(cfg).test()``, the path of the stock ``test.py``;
the model (and, under the standard protocol, its normalisation) comes from the model's own config.
Checkpoints are checked once, up front, with
:func:`robustvit_mm.engine.checkpoint_check.init_checked_model`
(and again by the configs' ``CheckpointGuardHook`` when each set loads them).

``tools/robustness_report.py`` is the command line; docs/evaluation.md describes both protocols.
"""
import copy
import datetime
import json
import os
import os.path as osp
import sys
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

from ..datasets import PAPER_NORM
from ..evaluation.metrics import read_training_classes
from ..utils.progress import ProgressBar
from . import paper_layout
from .paper_results import load_paper_results
from .report_figure_7 import figure_7_section
from .report_gallery import check_gallery, gallery_models
from .report_per_class import per_class_section
from .report_tables import (SET_BY_KEY, SETS, draw_chart, markdown_table, split_name, table_rows,
                            write_csv)
from .sweep import REFERENCE as SWEEP_REFERENCE
from .sweep import RESULTS as SWEEP_RESULTS
from .sweep_families import FAMILIES as SWEEP_FAMILIES

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(REPO, 'configs', 'robustness')
CONFIG_DATA_ROOT = 'data'  # the provided configs point at data/<folder>; --data-root replaces it

PROTOCOLS = {
    'paper': '1000-way argmax everywhere; ObjectNet scored against its first mapped ImageNet '
             'class, no border crop; Resize 256 -> CenterCrop 224; mean = std = 0.5 for every '
             'model (what the released RobustViT code did).',
    'standard': 'ImageNet-A / ImageNet-R argmax restricted to their 200 classes (the fixed '
                'published lists); ObjectNet argmax restricted to the ImageNet classes of its 113 '
                'overlapping classes, any mapped class counts, 3-px border crop; each model\'s '
                'native normalisation.',
}


# ------------------------------------------------------------------------------------- the sets
def set_config_path(config_dir, key, protocol):
    return osp.join(config_dir, f'{key}{"_standard" if protocol == "standard" else ""}.py')


def _load_set_config(config_dir, key, protocol):
    from mmengine.config import Config
    path = set_config_path(config_dir, key, protocol)
    if not osp.isfile(path):
        raise FileNotFoundError(f'no config {path} for {key} ({protocol} protocol)')
    return Config.fromfile(path)


def set_data_root(cfg, data_root):
    """The set config's ``data_root`` (``data/<folder>``) moved under ``data_root``."""
    own = cfg.test_dataloader.dataset.get('data_root') or CONFIG_DATA_ROOT
    relative = osp.relpath(osp.normpath(own), CONFIG_DATA_ROOT)
    return osp.normpath(osp.join(data_root, relative))


def find_sets(data_root, keys, protocol, config_dir=CONFIG_DIR):
    """``(present, missing)``: lists of ``(key, location)`` for the sets under ``data_root``."""
    from ..datasets.shifted import dataset_location
    present, missing = [], []
    for key in keys:
        cfg = _load_set_config(config_dir, key, protocol)
        dataset = dict(cfg.test_dataloader.dataset, data_root=set_data_root(cfg, data_root))
        location = dataset_location(dataset)
        (present if osp.exists(location) else missing).append((key, location))
    return present, missing


# ----------------------------------------------------------------------------------- evaluation
def apply_normalisation(cfg, model_cfg, protocol):
    """Paper: mean = std = 127.5 for every model. Standard: the model config's own. Returns a
    text."""
    own = cfg.model.get('data_preprocessor')
    if protocol == 'paper':
        cfg.data_preprocessor = dict(num_classes=1000, **copy.deepcopy(PAPER_NORM))
        if own:
            own.update(copy.deepcopy(PAPER_NORM))
        return 'mean = std = 127.5 (paper protocol, as the released code)'
    if own:
        norm = own
    elif model_cfg.get('data_preprocessor'):
        norm = cfg.data_preprocessor = copy.deepcopy(model_cfg.data_preprocessor)
    else:
        norm = cfg.data_preprocessor
        print(f'  note: the model config sets no data_preprocessor; using mean '
              f'{list(norm.get("mean", []))} std {list(norm.get("std", []))}')
    return f'mean {list(norm.get("mean", []))} std {list(norm.get("std", []))} (native)'


def _predictions_only(model):
    """Switch off a fine-tuning validation loss computed inside ``predict`` (RobustViT's
    ``RelevanceGuided*Classifier(val_loss=True)``): evaluation needs only the predictions, and that
    loss needs ground-truth labels the segmentation set does not have."""
    import inspect
    from mmpretrain.registry import MODELS
    model_cls = MODELS.get(model.get('type', '')) if isinstance(model.get('type'), str) else None
    if model_cls is not None and 'val_loss' in inspect.signature(model_cls.__init__).parameters:
        model.val_loss = False


def build_test_config(key, protocol, model_config, checkpoint, data_root, work_dir,
                      config_dir=CONFIG_DIR, batch_size=None, num_workers=None, verbose=False,
                      class_split=None, per_class=False):
    """The set's provided config with the model (and its normalisation) of ``model_config``."""
    import torch
    from mmengine.config import Config
    cfg = _load_set_config(config_dir, key, protocol)
    model_cfg = Config.fromfile(model_config)
    cfg.model = copy.deepcopy(model_cfg.model)
    _predictions_only(cfg.model)
    norm = apply_normalisation(cfg, model_cfg, protocol)
    imports = list(cfg.get('custom_imports', {}).get('imports', []))
    for name in model_cfg.get('custom_imports', {}).get('imports', []):
        if name not in imports:
            imports.append(name)
    cfg.custom_imports = dict(imports=imports, allow_failed_imports=False)

    loader = cfg.test_dataloader
    loader.dataset.data_root = set_data_root(cfg, data_root)
    if batch_size:
        loader.batch_size = batch_size
    if num_workers is not None:
        loader.num_workers = num_workers
    if loader.get('num_workers', 0) == 0:
        loader.persistent_workers = False
    loader.setdefault('pin_memory', torch.cuda.is_available())
    if cfg.test_evaluator.get('type') == 'ShiftedAccuracy':
        if class_split:
            cfg.test_evaluator.class_split = class_split
        if per_class:
            cfg.test_evaluator.per_class = True
    cfg.load_from = checkpoint
    cfg.work_dir = work_dir
    cfg.launcher = 'none'
    cfg.experiment_name = f'{osp.basename(work_dir)}_{uuid.uuid4().hex[:8]}'
    if not verbose:
        cfg.log_level = 'WARNING'
    return cfg, norm


def _progress_hook(desc):
    from mmengine.hooks import Hook

    class Progress(Hook):
        def before_test_epoch(self, runner):
            self.bar = ProgressBar(len(runner.test_dataloader), unit='batch', desc=desc,
                                   file=sys.stderr)

        def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            self.bar.update()

        def after_test_epoch(self, runner, metrics=None):
            self.bar.close()

    return Progress()


def run_evaluation(cfg, desc, hooks=()):
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg)
    runner.register_hook(_progress_hook(desc), priority='VERY_LOW')
    for hook in hooks:
        runner.register_hook(hook, priority='VERY_LOW')
    return {k: float(v) for k, v in runner.test().items()}


# -------------------------------------------------------------------------------------- results
def load_results(path, key, protocol):
    """Metrics of set ``key`` from a ``test.py --out X.json --out-item metrics`` file."""
    with open(path, encoding='utf-8') as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f'--results {path}: not valid JSON ({error}); expected the file '
                             'test.py writes with --out X.json --out-item metrics') from None
    if not isinstance(data, dict):
        raise ValueError(f'{path}: expected the metrics dict that test.py writes with --out-item '
                         f'metrics, got {type(data).__name__}')
    prefix = f'{key}_{protocol}/'
    found = {k: float(v) for k, v in data.items() if k.startswith(prefix)}
    if not found:
        other = [p for p in PROTOCOLS if p != protocol
                 and any(k.startswith(f'{key}_{p}/') for k in data)]
        if other:
            raise ValueError(f'{path}: {key} was evaluated under the {other[0]} protocol; '
                             f'this report uses the {protocol} protocol')
        keys = ', '.join(sorted(data)) or 'none'
        raise ValueError(f'{path}: no {prefix}* metrics (keys: {keys})')
    return found


class ReportImages:
    """Every picture of a report: a PNG file under ``out`` and the same image through one mmengine
    visualizer (``out/vis_data``, plus TensorBoard / WandB backends), closed at the end so every
    backend has written it."""

    def __init__(self, out, vis_backends=()):
        self.out, self.vis_backends, self._visualizer = out, list(vis_backends), None

    def visualizer(self):
        from mmengine.visualization import Visualizer
        if self._visualizer is None:
            names = {'local': 'LocalVisBackend', 'tensorboard': 'TensorboardVisBackend',
                     'wandb': 'WandbVisBackend'}
            backends = [dict(type=names[n]) for n in
                        ['local', *[b for b in self.vis_backends if b != 'local']]]
            self._visualizer = Visualizer(name=f'robustness_report_{uuid.uuid4().hex[:8]}',
                                          vis_backends=backends, save_dir=self.out)
        return self._visualizer

    def add(self, name, image, file, step=0):
        """``image`` (RGB uint8) to ``out/file`` and to the backends under tag ``name``."""
        import cv2
        path = osp.join(self.out, file)
        os.makedirs(osp.dirname(path), exist_ok=True)
        cv2.imwrite(path, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        self.visualizer().add_image(name, image, step=step)

    def close(self):
        if self._visualizer is not None:
            self._visualizer.close()
            self._visualizer = None


def write_markdown(path, table, protocol, model_lines, notes, sections=()):
    when = datetime.datetime.now().strftime('%Y-%m-%d %H:%M')
    text = [
        '# Robustness report', '',
        f'Protocol: **{protocol}**: {PROTOCOLS[protocol]}', '',
        'Accuracies are top-1 percentages; the segmentation rows are the relevance-as-segmentation '
        'test (relevance of the predicted class thresholded at its per-image mean; pixel accuracy '
        'and mIoU pooled over the dataset, mAP averaged over images).', '',
        table, '',
    ]
    text += list(sections)
    text += ['## Models', '', *model_lines, '']
    if notes:
        text += ['## Notes', '', *notes, '']
    text += [f'Written by tools/robustness_report.py on {when}.', '']
    with open(path, 'w', encoding='utf-8') as f:
        f.write('\n'.join(text))


# ------------------------------------------------------------------------------------- checks
def check_request(models, results, data_root, sets=None, protocol='paper',
                  config_dir=CONFIG_DIR):
    """Everything that can be wrong before any evaluation, each a ``ValueError`` /
    ``FileNotFoundError`` naming the option. Returns ``(present, missing)`` sets when models run."""
    if not models and not results:
        raise ValueError('give at least one --model or --results')
    if protocol not in PROTOCOLS:
        raise ValueError(f'protocol {protocol!r}: one of {", ".join(PROTOCOLS)}')
    names = [name for name, _, _ in models]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f'--model {twice[0]!r} is given {names.count(twice[0])} times: each model '
                         'needs its own name (its results file is results/<name>__<set>.json)')
    bad = [n for n in names + [name for name, _, _ in results] if '/' in n or '__' in n]
    if bad:
        raise ValueError(f'model name {bad[0]!r}: no "/" or "__" (it names results/<name>__<set>'
                         '.json); name architecture and method as ARCH:METHOD')
    merged = [(name, key) for name, key, _ in results]
    twice = sorted({m for m in merged if merged.count(m) > 1})
    if twice:
        raise ValueError(f'--results {twice[0][0]} {twice[0][1]} is given more than once')
    owner = {}
    for name, _, path in results:
        first = owner.setdefault(osp.realpath(path), name)
        if first != name:  # one run's metrics cannot be two models' results
            raise ValueError(f'--results {path} is given for two models, {first!r} and {name!r}: '
                             'a results file holds one model\'s metrics')
    paper_layout.check_model_rows(list(dict.fromkeys(names + [n for n, _, _ in results])))
    unknown = [key for _, key, _ in results if key not in SET_BY_KEY] + \
        [key for key in (sets or []) if key not in SET_BY_KEY]
    if unknown:
        raise ValueError(f'unknown set {unknown[0]!r}; one of {", ".join(SET_BY_KEY)}')
    for _, _, path in results:
        if not osp.isfile(path):
            raise FileNotFoundError(f'--results: no file {path}')
    if not models:
        return [], []
    if not data_root:
        raise ValueError('--model needs --data-root')
    if not osp.isdir(data_root):
        raise FileNotFoundError(f'--data-root {data_root}: no such folder')
    lacking = [f'{name}: config {config}' for name, config, _ in models if not osp.isfile(config)]
    lacking += [f'{name}: checkpoint {ckpt}' for name, _, ckpt in models
                if not ckpt.startswith(('http://', 'https://')) and not osp.isfile(ckpt)]
    if lacking:
        raise FileNotFoundError('missing file(s): ' + '; '.join(lacking))
    wanted = list(sets) if sets else [s.key for s in SETS]
    present, missing = find_sets(data_root, wanted, protocol, config_dir)
    merged_sets = {key for _, key, _ in results}
    if not present and not merged_sets & set(wanted):
        expected = ', '.join(osp.relpath(where, data_root) for _, where in missing)
        raise FileNotFoundError(f'--data-root {data_root} holds none of the sets: expected one of '
                                f'{expected} under it (docs/evaluation.md, "Data layout")')
    return present, missing


def check_checkpoints(models):
    """Each model's checkpoint must fit its config's model: checked once, before any set runs."""
    from ..engine.checkpoint_check import init_checked_model
    for name, config, checkpoint in models:
        try:
            init_checked_model(config, checkpoint)
        except (ValueError, TypeError) as error:
            raise ValueError(f'--model {name}: {error}') from error


# ----------------------------------------------------------------------------------------- run
def shared_class_splits(names, class_splits):
    """``class_splits`` plus, for an ``ARCH:METHOD`` model without one, the split that the other
    models of its architecture share (Tables 10-11 score the original model on the classes its
    fine-tuned version was trained on)."""
    splits = dict(class_splits or {})
    for name in names:
        arch = (split_name(name) or (None, ))[0]
        if name in splits or arch is None:
            continue
        same = {path for other, path in splits.items() if (split_name(other) or (None, ))[0]
                == arch}
        if len(same) == 1:
            splits[name] = same.pop()
    return splits


@dataclass
class ReportOptions:
    """What one report evaluates, merges and draws (``tools/robustness_report.py`` builds one from
    its command line)."""
    models: Sequence[Tuple[str, str, str]] = ()   # (name, config, checkpoint); first = baseline
    results: Sequence[Tuple[str, str, str]] = ()  # (name, set key, test.py metrics JSON)
    data_root: Optional[str] = None               # the sets under their usual folders
    protocol: str = 'paper'                       # a key of PROTOCOLS
    out: str = 'work_dirs/robustness_report'
    sets: Optional[Sequence[str]] = None          # set keys; None = every set found
    top5: bool = False                            # report.csv also shows top-5
    batch_size: Optional[int] = None
    num_workers: Optional[int] = None
    config_dir: str = CONFIG_DIR
    verbose: bool = False
    vis_backends: Sequence[str] = ()              # 'tensorboard', 'wandb' beside the local one
    # {model name: work dir or imagenet_s_split.json}: fine-tuning classes vs the others
    class_splits: Dict[str, str] = field(default_factory=dict)
    per_class: bool = False                       # Appendix J: per-class changes
    top_classes: int = 50
    gallery: Optional[tuple] = None               # (set key, N[, rule]): :mod:`.report_gallery`
    # (ARCH or ARCH:METHOD, sweep work dir): every finished point as a model ARCH:METHOD@POINT
    sweeps: Sequence[Tuple[str, str]] = ()


def sweep_models(spec, work_dir):
    """The ``(name, config, checkpoint)`` of every finished point of the sweep in ``work_dir`` (its
    ``sweep_results.json``), named ``ARCH:METHOD@POINT`` (``spec``: ARCH or ARCH:METHOD; METHOD
    defaults to RobustViT); ``{name: work dir}`` for the points that saved a class split; and the
    names of the points that are repeats of one setting (seed families: Tables 8-9), not a
    sensitivity grid (Appendix G, the lr grid)."""
    arch, _, method = spec.partition(':')
    if not arch or '@' in spec or '/' in spec:
        raise ValueError(f'--sweep {spec}: name the row as ARCH or ARCH:METHOD')
    path = osp.join(work_dir, SWEEP_RESULTS)
    if not osp.isfile(path):
        raise FileNotFoundError(f'--sweep {spec} {work_dir}: no {SWEEP_RESULTS} (written by '
                                'tools/sweep.py when a point finishes)')
    try:
        with open(path, encoding='utf-8') as f:
            records = json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(f'--sweep {spec}: {path} is not valid JSON ({error})') from None
    if not isinstance(records, list) or not records:
        raise ValueError(f'--sweep {spec}: {path} holds no finished point')
    models, splits, repeats = [], {}, []
    for r in records:
        if r['point'] == SWEEP_REFERENCE:  # the pretrained model, the lr rule's reference point
            continue
        name = f'{arch}:{method or "RobustViT"}@{r["point"]}'
        dumped = osp.join(r['work_dir'], osp.basename(r['config']))
        models.append((name, dumped if osp.isfile(dumped) else r['config'], r['checkpoint']))
        if osp.isfile(osp.join(r['work_dir'], 'imagenet_s_split.json')):
            splits[name] = r['work_dir']
        family = SWEEP_FAMILIES.get(r.get('family'))
        if family is not None and family.spread:
            repeats.append(name)
    return models, splits, repeats


def run_report(options):
    """Evaluate ``options.models`` on the sets under ``options.data_root``, merge
    ``options.results``, write the report to ``options.out`` (:class:`ReportOptions`).

    Class splits split a fine-tuned model's accuracy into its fine-tuning classes and the others
    (an ``ARCH:METHOD`` model without one takes its architecture's). Models named ``ARCH:METHOD``
    also get the paper's tables in its layout, beside the published numbers with the differences,
    and Figure 4 (:mod:`.paper_layout`); ``ARCH:METHOD@RUN`` models (e.g. from ``sweeps``) give
    Tables 8-9. ``per_class``: Appendix J's section and charts (:mod:`.report_per_class`; merged
    results carry them when test.py ran with ``per_class=True``). ``gallery``: images with
    relevance before and after, picked by the gallery's rule (:mod:`.report_gallery`). Every
    picture also goes to the visualizer's backends.

    Returns 0, or 1 when an evaluation failed (the others still run and the failure is in the
    report). Bad requests raise before anything runs (see :func:`check_request`).
    """
    if not isinstance(options, ReportOptions):
        raise TypeError(f'run_report takes a ReportOptions, got {type(options).__name__}')
    models, results = [tuple(m) for m in options.models], [tuple(r) for r in options.results]
    class_splits, grid_points = dict(options.class_splits or {}), set()
    for spec, work_dir in options.sweeps:
        more, found, repeats = sweep_models(spec, work_dir)
        models += more
        grid_points |= {name for name, _, _ in more} - set(repeats)
        class_splits.update({n: p for n, p in found.items() if n not in class_splits})
    protocol, out, gallery = options.protocol, options.out, options.gallery
    data_root, config_dir = options.data_root, options.config_dir
    present, missing = check_request(models, results, data_root, options.sets, protocol,
                                     config_dir)
    unknown = sorted(set(class_splits) - {name for name, _, _ in models})
    if unknown:
        raise ValueError(f'--class-split {unknown[0]}: no --model of that name')
    for name, path in class_splits.items():
        read_training_classes(path)  # a wrong path fails now, not after the other sets ran
    splits = shared_class_splits([name for name, _, _ in models], class_splits)
    if gallery:
        gallery = check_gallery(gallery, [name for name, _, _ in models], results, present)
    loaded = {(name, key): load_results(path, key, protocol) for name, key, path in results}
    check_checkpoints(models)

    os.makedirs(osp.join(out, 'results'), exist_ok=True)
    order, table, notes, model_lines = [], {}, [], {}
    for name, config, checkpoint in models:
        order.append(name)
        model_lines[name] = f'- **{name}**: `{config}`, checkpoint `{checkpoint}`'
        if name in splits:
            model_lines[name] += f'; class split `{splits[name]}`'
    for name, key, path in results:
        if name not in order:
            order.append(name)
            model_lines[name] = f'- **{name}**: results merged from JSON files'
        table.setdefault(name, {})[key] = loaded[(name, key)]
        notes.append(f'- {name} / {SET_BY_KEY[key].title}: merged from `{path}`.')
    for key, where in missing:
        line = f'{SET_BY_KEY[key].title}: not found at {where}, skipped'
        print(line)
        if not any(key in table.get(m, {}) for m in order):
            notes.append(f'- {line}.')

    jobs = [(key, model) for key, _ in present for model in models
            if key not in table.get(model[0], {})]
    gallery_set, recorded = gallery_models(gallery) if gallery else (None, set())
    failed, norms, test_cfgs, predictions = False, {}, {}, {}
    for i, (key, (name, config, checkpoint)) in enumerate(jobs, 1):
        desc = f'[{i}/{len(jobs)}] {name} on {SET_BY_KEY[key].title}'
        print(desc)
        try:
            cfg, norm = build_test_config(
                key, protocol, config, checkpoint, data_root, osp.join(out, 'work_dirs', name, key),
                config_dir, options.batch_size, options.num_workers, options.verbose,
                splits.get(name), options.per_class)
            norms.setdefault(name, norm)
            hooks = []
            if key == gallery_set and name in recorded:
                from .report_gallery import PredictionRecorder, save_predictions
                hooks = [PredictionRecorder()]
                test_cfgs[name] = copy.deepcopy(cfg)
            metrics = run_evaluation(cfg, desc, hooks)
            if hooks:
                predictions[name] = hooks[0].records
                save_predictions(out, name, key, hooks[0].records)
        except Exception as err:  # keep the other evaluations; report the failure loudly
            failed = True
            traceback.print_exc()
            line = f'{name} on {SET_BY_KEY[key].title} FAILED: {type(err).__name__}: {err}'
            print(line)
            notes.append(f'- {line}')
            continue
        table.setdefault(name, {})[key] = metrics
        with open(osp.join(out, 'results', f'{name}__{key}.json'), 'w') as f:
            json.dump(metrics, f, indent=1)

    for name, norm in norms.items():
        model_lines[name] += f'; normalisation {norm}'
    if protocol == 'standard':
        notes.append('- ImageNet-A/R class subsets: the fixed 200-wnid lists published with the '
                     'sets (robustvit_mm/datasets/data/imagenet_{a,r}_wnids.json).')
    rows = table_rows(table, order, protocol, options.top5)
    markdown = markdown_table(rows, order)
    images = ReportImages(out, options.vis_backends)
    try:
        sections = _paper_sections(table, [n for n in order if n not in grid_points],
                                   protocol, out)
        sections += _figure_4(table, order, images, protocol, out)
        sections += figure_7_section(images, table, options.sweeps, protocol, out)
        sections += per_class_section(images, table, order, protocol, options.top_classes,
                                      osp.join(out, 'report_per_class.csv'))
        if gallery:
            from .report_gallery import gallery_section
            sections += gallery_section(images, gallery, models, test_cfgs, predictions, notes)
        if rows:
            images.add('robustness_report', draw_chart(rows, order, protocol), 'report.png')
    finally:
        images.close()
    write_markdown(osp.join(out, 'report.md'), markdown, protocol,
                   [model_lines[m] for m in order], notes, sections)
    write_csv(osp.join(out, 'report.csv'), rows, order)
    print(f'\nProtocol: {protocol}\n{markdown}\n')
    print(f'Wrote {osp.join(out, "report.md")}, report.csv' + (', report.png' if rows else ''))
    return 1 if failed else 0


def _paper_sections(results, order, protocol, out):
    """The paper's tables in its layout (``report_table-<n>.csv`` each) as report lines."""
    made = paper_layout.paper_tables(results, order, protocol, load_paper_results())
    for table in made:
        paper_layout.write_table_csv(osp.join(out, f'report_{table.name}.csv'), table)
    if not made:
        return []
    return ['## As in the paper', '',
            'Models named `ARCH:METHOD` (and `ARCH:METHOD@RUN` for Tables 8-9), in the paper\'s '
            'layout: per column our value, the paper\'s published number and the difference '
            '(ours - paper). The published numbers and their provenance (table, row, column) are '
            '`robustvit_mm/experiments/data/paper_results.json`.', '',
            *paper_layout.tables_markdown(made)]


def _figure_4(results, order, images, protocol, out):
    """Figure 4 when class-split results of ``ARCH:original`` and ``ARCH:RobustViT`` exist: PNG,
    the visualizer's backends, ``report_figure-4.csv`` (ours, the paper's, the difference) and
    report lines."""
    used, points = paper_layout.figure_4(results, order, protocol, load_paper_results())
    if not points:
        return []
    image, _ = paper_layout.draw_figure_4(points, used, protocol)
    images.add('figure_4', image, 'report_figure-4.png')
    paper_layout.write_figure_4_csv(osp.join(out, 'report_figure-4.csv'), points)
    return ['## Figure 4: fine-tuning classes vs other classes', '',
            f'Change of Ours over Original, averaged over {", ".join(used)}, on the fine-tuning '
            'classes and on the other classes; (a) top-1, (b) top-5. Hatched bars: the paper\'s '
            'averages (Tables 10-11, as printed; they do not all follow from those tables\' rows). '
            'Numbers: `report_figure-4.csv`.', '', '![Figure 4](report_figure-4.png)', '']


__all__ = ['ReportOptions', 'run_report', 'sweep_models', 'check_request', 'find_sets',
           'load_results', 'table_rows', 'SETS', 'PROTOCOLS', 'build_test_config',
           'shared_class_splits']
