"""What the demo runs: its seeds, its arms (configs of ``configs/synthetic/``), the benchmark sizes
of the full and the quick run, and :class:`DemoOptions`, the options of ``tools/demo.py``.

Seeds: 0-99 are for choosing the recipe (:data:`TUNING_SEEDS`), 100 and up are reported
(:data:`REPORTED_SEEDS`, the default); no recipe choice may look at a reported seed.
"""
import os.path as osp
from dataclasses import dataclass, field

from mmengine.config import Config

from ..datasets.synthetic import DEMO_RECIPE

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(REPO, 'configs', 'synthetic')

TUNING_SEEDS = range(0, 100)      # recipe choices are made on these only
REPORTED_SEEDS = range(100, 105)  # the default of the demo; what the README and docs/demo.md report
# Each seed runs in a process of its own with a FIXED torch thread count (another count gives other
# floating-point sums, so other numbers); WORKERS seeds run side by side, which changes only the time.
DEFAULT_THREADS = 1
DEFAULT_WORKERS = 2

# ---------------------------------------------------------------------------------------------
# What is run. An arm is a fine-tune config started from the pretrained checkpoint, optionally with
# config overrides (``--cfg-options`` style keys); 'pretrained' is the pretrained model itself. Adding
# an arm = one line here (+ one config if it is not an override of an existing one).
# ---------------------------------------------------------------------------------------------
PRETRAIN_CONFIG = 'vit-tiny-p4_pretrain_synthetic.py'
ROBUSTVIT_CONFIG = 'vit-tiny-p4_robustvit_synthetic.py'
ARMS = {
    'pretrained': None,
    'baseline_ce': 'vit-tiny-p4_ce-finetune_synthetic.py',        # plain CE (control)
    'robustvit': ROBUSTVIT_CONFIG,                                # the paper's method
    'robustvit_gt': 'vit-tiny-p4_robustvit-gt-ce_synthetic.py',   # GT-label CE ablation
    'gradmask': 'vit-tiny-p4_gradmask_synthetic.py',              # baselines (live penalty)
    'rrr': 'vit-tiny-p4_rrr_synthetic.py',
    # RobustViT loss ablations and the second-order variant (configs/baselines/README.md).
    'no_background': (ROBUSTVIT_CONFIG, {'model.relevance_loss.background_weight': 0.0}),
    'no_foreground': (ROBUSTVIT_CONFIG, {'model.relevance_loss.foreground_weight': 0.0}),
    'no_classification': (ROBUSTVIT_CONFIG, {'model.head.loss_weight': 0.0}),
    'create_graph': (ROBUSTVIT_CONFIG, {'model.create_graph': True}),
}
DEFAULT_ARMS = ('pretrained', 'baseline_ce', 'robustvit')
EVAL_CONFIGS = {
    'in_dist': 'vit-tiny-p4_eval-in-dist_synthetic.py',
    'shifted': 'vit-tiny-p4_eval-shifted-relevance_synthetic.py',  # top-1 + relevance seg, one pass
}

# Benchmark sizes (per class; 10 classes) and epochs. None: the generator's DEMO_RECIPE and the
# configs' epochs; QUICK is the CI smoke test (numbers meaningless).
FULL = dict(pretrain_per_class=None, masked_per_class=None, masked_val_per_class=None,
            test_per_class=None, pretrain_epochs=None, finetune_epochs=None)
QUICK = dict(pretrain_per_class=30, masked_per_class=2, masked_val_per_class=1,
             test_per_class=8, pretrain_epochs=1, finetune_epochs=2)


@dataclass
class DemoOptions:
    """What :func:`robustvit_mm.experiments.demo.run_demo` runs (the options of tools/demo.py)."""
    out: str = 'work_dirs/demo'
    seeds: list = field(default_factory=lambda: list(REPORTED_SEEDS))
    arms: list = field(default_factory=lambda: list(DEFAULT_ARMS))
    quick: bool = False
    threads: int = DEFAULT_THREADS
    workers: int = DEFAULT_WORKERS
    pretrain_per_class: int = None
    pretrain_epochs: int = None
    finetune_epochs: int = None
    reuse_pretrained: bool = False
    verbose: bool = False
    command: str = 'python tools/demo.py'

    def check(self):
        """ValueError / TypeError naming the bad option."""
        if isinstance(self.arms, str):
            raise TypeError(f'arms must be a list of arm names, got the string {self.arms!r}')
        unknown = [a for a in self.arms if a not in ARMS]
        if unknown:
            raise ValueError(f'arms: unknown {unknown}; choose from {list(ARMS)}')
        if not self.seeds:
            raise ValueError('seeds: at least one seed is needed')
        if not self.threads or self.threads < 1 or not self.workers or self.workers < 1:
            raise ValueError(f'threads and workers must be >= 1, got {self.threads}, {self.workers}')


def arm_config(arm):
    """(config file name, overrides) of a fine-tune arm."""
    spec = ARMS[arm]
    return spec if isinstance(spec, tuple) else (spec, {})


def arm_description(arm):
    """'configs/synthetic/<file>' plus its overrides, for results.json."""
    config, overrides = arm_config(arm)
    text = f'configs/synthetic/{config}'
    return text + ''.join(f' {k}={v}' for k, v in overrides.items())


def demo_recipe(options):
    """The generated sizes and epochs of this run (DEMO_RECIPE, --quick, the explicit options)."""
    recipe = dict(QUICK if options.quick else FULL)
    recipe.update({k: v for k, v in DEMO_RECIPE.items() if recipe.get(k) is None})
    for key in ('pretrain_per_class', 'pretrain_epochs', 'finetune_epochs'):
        if getattr(options, key) is not None:
            recipe[key] = getattr(options, key)
    # One source of truth for the image size: the model of the pretraining config.
    pretrain = Config.fromfile(osp.join(CONFIG_DIR, PRETRAIN_CONFIG))
    recipe['image_size'] = int(pretrain.model.backbone.img_size)
    return recipe
