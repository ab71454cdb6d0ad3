"""The explainability engine: attention capture and GAE relevance. Knows nothing of runners."""
from .capture import AttentionRecorder, record_attention
from .gae import attention_rollout, gae_from_attention, gae_relevance, raw_attention

__all__ = ['AttentionRecorder', 'record_attention', 'gae_relevance', 'gae_from_attention',
           'attention_rollout', 'raw_attention']
