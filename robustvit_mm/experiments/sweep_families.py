"""The sweep families: which experiment of the paper each one is, which config keys its points set,
and how a finished family is read (the learning-rate rules of Section 4).

A point is a set of ``--cfg-options`` overrides of a config, so a family depends on config keys, not
on the package's internals. Every key path is checked against the loaded config before anything is
launched.
"""
from dataclasses import dataclass
from typing import Callable, Dict, List

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

# Section 4: "a grid search between the values 5e-7 and 5e-6". The points in between are this
# package's choice: the range's ends and every learning rate of Table 5.
PAPER_LR_GRID = (5e-7, 6e-7, 8e-7, 9e-7, 1e-6, 2e-6, 3e-6, 5e-6)
# What the learning-rate rules read: test.py's metrics on the config's test split (the held-out
# classes' masked validation images, the paper's validation set).
ACCURACY_METRIC = 'accuracy/top1'
CLS_LOSS_METRIC = 'relevance/loss_cls'
PAPER_LR_TOLERANCE = 2.0      # points of top-1; Section 4 says "2-3%": the stricter end by default
NEAR_BEST_LR_TOLERANCE = 1.0  # points of top-1


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
    spread: bool = False  # repeats of one setting: the summary adds mean and std rows
    selects_lr: bool = False  # the summary marks the point a learning-rate rule selects


# ------------------------------------------------------------------------------------- key paths
def lookup(cfg, path: str):
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
            lookup(cfg, key)
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


# ----------------------------------------------------------------------------------------- points
def _ints(values, minimum=0):
    bad = [v for v in values if isinstance(v, bool) or not float(v).is_integer() or v < minimum]
    if bad:
        raise ValueError(f'sweep values {bad} are not integers >= {minimum}')
    return [int(v) for v in values]


def _seed_points(cfg, values):
    return [Point(f'seed{v}', {SEED_KEY: v}) for v in _ints(values)]


def _split_points(cfg, values):
    paths = dataset_option_paths(cfg, SPLIT_SEED_OPTION)
    for path in paths:
        dataset = lookup(cfg, path.rsplit('.', 1)[0])
        if dataset.get(CLASS_ORDER_OPTION, 'shuffled') != 'shuffled':
            # With the literal "first classes in sorted order" every point would be the same split.
            raise ValueError(
                f'{path}: split_seed has no effect with {CLASS_ORDER_OPTION}='
                f'{dataset[CLASS_ORDER_OPTION]!r}; add --cfg-options '
                + ' '.join(f'{p.rsplit(".", 1)[0]}.{CLASS_ORDER_OPTION}=shuffled' for p in paths))
    return [Point(f'split{v}', {p: v for p in paths}) for v in _ints(values)]


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
    bad = [v for v in values if isinstance(v, bool) or not float(v) > 0]
    if bad:
        raise ValueError(f'lr-grid values are learning rates > 0, got {bad}')
    return [Point(f'lr{float(v):.3g}', {LR_KEY: float(v)}) for v in values]


# ------------------------------------------------------------------------------ learning-rate rules
def _number(metrics, key):
    value = metrics.get(key)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def select_lr_paper(records, reference, tolerance=PAPER_LR_TOLERANCE):
    """Section 4's rule of thumb: "the highest learning rate for which the validation accuracy does
    not decrease by more than 2-3% and L_classification does not increase". The reference point is
    the fine-tune's starting point, the pretrained model (``reference``: its test.py metrics on the
    same validation split): a point qualifies when its top-1 is at least the pretrained top-1 minus
    ``tolerance`` points and its classification loss is at most the pretrained one. Returns the
    name of the qualifying point with the highest lr, or None when none qualifies."""
    ref_top1, ref_loss = _number(reference, ACCURACY_METRIC), _number(reference, CLS_LOSS_METRIC)
    if ref_top1 is None or ref_loss is None:
        raise ValueError(f'the paper\'s lr rule needs {ACCURACY_METRIC} and {CLS_LOSS_METRIC} of the '
                         f'pretrained model; its test.py metrics hold {sorted(reference)}')
    ok = [r for r in records
          if _number(r['metrics'], ACCURACY_METRIC) is not None
          and _number(r['metrics'], CLS_LOSS_METRIC) is not None
          and r['metrics'][ACCURACY_METRIC] >= ref_top1 - tolerance
          and r['metrics'][CLS_LOSS_METRIC] <= ref_loss]
    return max(ok, key=lambda r: r['overrides'][LR_KEY])['point'] if ok else None


def select_lr_near_best(records, reference=None, tolerance=NEAR_BEST_LR_TOLERANCE):
    """This package's alternative: the highest lr whose top-1 is within ``tolerance`` points of the
    best point of the grid (no reference model needed). None when no record has the metric."""
    scored = [r for r in records if _number(r['metrics'], ACCURACY_METRIC) is not None]
    if not scored:
        return None
    best = max(r['metrics'][ACCURACY_METRIC] for r in scored)
    ok = [r for r in scored if r['metrics'][ACCURACY_METRIC] >= best - tolerance]
    return max(ok, key=lambda r: r['overrides'][LR_KEY])['point']


LR_RULES = {
    'paper': (select_lr_paper,
              f'Section 4\'s rule of thumb: the highest lr whose top-1 ({ACCURACY_METRIC} of test.py '
              f'on the validation split) is at most {PAPER_LR_TOLERANCE:g} points below the '
              f'pretrained model\'s (the reference point: the fine-tune\'s start, tested the same '
              f'way) and whose L_classification ({CLS_LOSS_METRIC}) is not above the pretrained '
              'model\'s'),
    'near-best': (select_lr_near_best,
                  f'this package\'s choice: the highest lr whose top-1 ({ACCURACY_METRIC}) is within '
                  f'{NEAR_BEST_LR_TOLERANCE:g} point of the best point of the grid'),
}
DEFAULT_LR_RULE = 'paper'


_SPLIT_NOTE = ('The class split is the dataset option `split_seed` of every dataloader (sorted '
               'classes shuffled with that seed; the list is saved as imagenet_s_split.json in the '
               'point\'s work dir).')
FAMILIES = {f.name: f for f in (
    Family('appendix-e', 'Appendix E (Tables 8 and 9: the choice of the 500 training classes)',
           'split_seed = v: each point draws other training classes "with exactly the same '
           'hyperparameters" (Appendix E), the training seed stays that of the config. Read: mean '
           'and spread of each metric over the points (the mean and std rows of the summary). '
           + _SPLIT_NOTE, (0, 1, 2), _split_points, spread=True),
    Family('seeds', 'not in the paper (this package\'s choice: the training seed only)',
           'randomness.seed = v; the training classes stay those of the config.',
           (0, 1, 2), _seed_points, spread=True),
    Family('appendix-g-classes', 'Appendix G (number of training classes)',
           'num_classes = v training classes (images per class as in the config); the held-out '
           'classes (validation/test split) are the rest. Defaults are a grid up to the paper\'s '
           '500 chosen here; the paper\'s own grid: its Appendix G (pass it with --values).',
           (100, 200, 300, 400, 500), _classes_points),
    Family('appendix-g-images', 'Appendix G (images per class)',
           'num_samples = v masked images per training class (ImageNet-S919 has 10 per class; the '
           'paper uses 3). A class with fewer masks gives all it has: the summary shows the '
           'number used. Defaults chosen here; the paper\'s grid: its Appendix G.',
           (1, 2, 3, 5, 10), _images_points),
    Family('appendix-g', 'Appendix G (both grids)',
           'The appendix-g-classes points followed by the appendix-g-images points.',
           (), _appendix_g_points),
    Family('lr-grid', 'Section 4 (learning rate per model)',
           'lr = v (absolute; default: the range of Section 4, 5e-7 to 5e-6, with every lr of '
           'Table 5). The selected point (see the rule line) is marked in the summary.',
           PAPER_LR_GRID, _lr_points, selects_lr=True),
)}


def describe_families() -> str:
    lines = []
    for f in FAMILIES.values():
        values = ', '.join(map(str, f.default_values)) or '(fixed)'
        lines.append(f'{f.name}: {f.paper}\n    values: {values}\n    {f.rule}')
    lines.append('learning-rate rules (--lr-rule): ' + '; '.join(
        f'{name}{" (default)" if name == DEFAULT_LR_RULE else ""}: {text}'
        for name, (_, text) in LR_RULES.items()))
    return '\n'.join(lines)
