"""The explainability engine: attention capture and GAE relevance. Knows nothing of runners."""
from .capture import AttentionRecorder, UnsupportedModelError
from .gae import (EXPLAINERS, attention_rollout, gae_combine, gae_relevance,
                  get_explainer, raw_attention)

__all__ = ['AttentionRecorder', 'UnsupportedModelError', 'gae_relevance', 'attention_rollout',
           'raw_attention', 'get_explainer', 'EXPLAINERS', 'gae_combine']
