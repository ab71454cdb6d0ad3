"""robustvit_mm: RobustViT relevance-guided fine-tuning as an mmpretrain plugin.

Importing the package registers every module in mmpretrain's registries, so a config needs only
``custom_imports = dict(imports=['robustvit_mm'], allow_failed_imports=False)``.
"""
from . import compat

# Import side effects, all of them here: the upstream patches of robustvit_mm/compat/ (safe
# checkpoint loading, CPU distributed init/teardown); each can be switched off with
# ROBUSTVIT_COMPAT_OFF=<name>. The module imports below only register our classes.
compat.apply()

# Upstream modules imported here run with only the known-harmless upstream warnings silenced
# (compat/upstream_warnings.py; the filters are restored afterwards).
with compat.quiet():
    from . import (datasets, engine, evaluation, masks, models, relevance,  # noqa: F401
                   visualization)
    from .relevance import attention_rollout, gae_relevance, raw_attention

__version__ = '0.1.0'
__all__ = ['gae_relevance', 'attention_rollout', 'raw_attention', '__version__']
