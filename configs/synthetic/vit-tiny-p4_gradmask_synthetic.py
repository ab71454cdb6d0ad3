# GradMask baseline on the built-in benchmark: penalty on the input gradient of the GT logit over the
# background (create_graph=True, so it trains the model; configs/baselines/README.md), plus
# 0.2 * CE(logits, GT label). Data, batch, lr, schedule, epochs and validation are those of
# vit-tiny-p4_robustvit_synthetic.py; only the classifier and its losses change.
#
#     .venv/bin/python tools/demo.py --arms baseline_ce,robustvit,gradmask,rrr
_base_ = './vit-tiny-p4_robustvit_synthetic.py'

model = dict(
    _delete_=True,
    type='InputGradientGuidedClassifier',
    backbone=_base_.model.backbone,
    neck=_base_.model.neck,
    head=dict(_base_.model.head, target='gt'),
    # The released mean-of-squares penalty: the form docs/demo.md's numbers were measured with.
    saliency_loss=dict(type='GradMaskLoss', loss_weight=0.8, penalty='mean_square'))
