"""robustvit_mm: RobustViT relevance-guided fine-tuning as an mmpretrain plugin.

Importing the package registers every module in mmpretrain's registries, so a config needs only
``custom_imports = dict(imports=['robustvit_mm'], allow_failed_imports=False)``.
"""
from . import compat

# Upstream imports below run with only the known-harmless upstream warnings silenced (compat/
# upstream_warnings.py; the filters are restored afterwards).
with compat.quiet():
    from .checkpoint import enable_local_checkpoint_loading, enable_safe_remote_loading

    enable_local_checkpoint_loading()
    enable_safe_remote_loading()

    from . import datasets, engine, evaluation, masks, models, relevance, visualization  # noqa: F401
    from .relevance import attention_rollout, gae_relevance, raw_attention

__version__ = '0.1.0'
__all__ = ['gae_relevance', 'attention_rollout', 'raw_attention', '__version__']
