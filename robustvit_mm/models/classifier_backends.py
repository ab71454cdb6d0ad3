"""What differs between an mmpretrain ``ImageClassifier`` and a ``TimmClassifier`` for the
guided classifiers (RobustViT's and the GradMask / RRR baselines'): where the logits, the
classification loss and the predictions come from. One mixin per kind, placed before the
mmpretrain class in the bases."""


class ImageClassifierBackend:
    """An mmpretrain ``ImageClassifier``: backbone -> neck -> head; the loss lives in the head."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._check_head_width()

    def _check_head_width(self):
        """A head narrower or wider than the backbone's features fails at build, naming the key
        (without a checkpoint nothing else would say it before a bare matmul shape error)."""
        features = getattr(self.backbone, 'embed_dims', None)
        width = getattr(self.head, 'in_channels', None)
        if self.with_neck or not isinstance(features, int) or not isinstance(width, int):
            return
        if width != features:
            raise ValueError(
                f'model.head.in_channels={width}, but the backbone {type(self.backbone).__name__} '
                f'gives {features}-dim features (its embed_dims): set model.head.in_channels='
                f'{features} (or the backbone arch whose width the head expects)')

    def _logits(self, inputs):
        return self.head(self.extract_feat(inputs))

    def _classification_loss_module(self):
        return self.head.loss_module

    def _classification_losses(self, logits, data_samples):
        losses = self.head._get_loss(logits, data_samples)
        # The head calls its CE 'loss', which would shadow the total that mmengine logs as 'loss'.
        return {('loss_cls' if k == 'loss' else k): v for k, v in losses.items()}

    def _predictions(self, logits, data_samples):
        return self.head._get_predictions(logits, data_samples)


class TimmClassifierBackend:
    """mmpretrain's ``TimmClassifier``: a timm model gives the logits; the loss is the wrapper's."""

    def _logits(self, inputs):
        return self.model(inputs)

    def _classification_loss_module(self):
        return self.loss_module

    def _classification_losses(self, logits, data_samples):
        return {'loss_cls': self._get_loss(logits, data_samples)['loss']}

    def _predictions(self, logits, data_samples):
        return self._get_predictions(logits, data_samples)
