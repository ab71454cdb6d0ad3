# (b) The control: plain cross-entropy fine-tuning (GT labels, weight 1) of the same pretrained ViT on
# the same masked subset, with the same batch, learning rate, schedule, epochs, validation and
# hooks as the RobustViT fine-tune. The masks are loaded but not used by the loss: the only
# difference from vit-tiny-p4_robustvit_synthetic.py is the objective.
#
#     .venv/bin/python tools/train.py configs/synthetic/vit-tiny-p4_ce-finetune_synthetic.py
_base_ = './vit-tiny-p4_robustvit_synthetic.py'

model = dict(
    _delete_=True,
    type='ImageClassifier',
    backbone=_base_.model.backbone,
    neck=None,
    head=dict(
        type='VisionTransformerClsHead',
        num_classes=10,
        in_channels=96,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))

# No relevance loss to validate: top-1 on the held-out masked images, a checkpoint every epoch
# (the last one is evaluated, as for every fine-tune arm of tools/demo.py).
val_evaluator = dict(_delete_=True, type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator
default_hooks = dict(
    checkpoint=dict(_delete_=True, type='CheckpointHook', interval=1, max_keep_ckpts=1))
