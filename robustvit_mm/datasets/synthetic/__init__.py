"""The built-in spurious-background benchmark: digit tiles with exact masks on class-coloured backgrounds.

Three ways in, one file each:
  * ``render`` - :func:`render_sample` / :func:`generate_split`, pure numpy generators (the recipe);
  * ``write`` - :func:`write_benchmark`, the on-disk benchmark in the ImageNet-S / ImageFolder layouts,
    so the same dataset classes, pipelines and tools that serve ImageNet are exercised
    (``tools/make_synthetic.py``);
  * ``dataset`` - :class:`SyntheticSpuriousDataset` (``DATASETS``), the same samples generated in memory.
"""
from .dataset import SyntheticSpuriousDataset
from .render import (DEFAULT_PER_CLASS, DEMO_RECIPE, GENERATOR_VERSION, PATCH_SIZE, SPLITS,
                     background_style, class_names, generate_split, glyph_pool, render_background,
                     render_sample, sample_background_labels, tile_sizes)
from .write import LAYOUT, set_data_root, write_benchmark

__all__ = [
    'DEMO_RECIPE', 'GENERATOR_VERSION', 'PATCH_SIZE', 'SPLITS', 'DEFAULT_PER_CLASS', 'LAYOUT',
    'class_names', 'tile_sizes', 'glyph_pool', 'background_style', 'render_background',
    'render_sample', 'sample_background_labels', 'generate_split', 'write_benchmark',
    'set_data_root', 'SyntheticSpuriousDataset'
]
