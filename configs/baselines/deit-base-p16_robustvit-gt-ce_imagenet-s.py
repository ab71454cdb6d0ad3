# RobustViT ablation for DeiT-B/16: ground-truth label instead of the model's own top-1 in the
# classification term (paper Table 4; docs/faithfulness.md#confidence-boosting); the released
# ablation script defaulted to 150 epochs: `--cfg-options train_cfg.max_epochs=150`.
_base_ = '../robustvit/deit-base-p16_robustvit_imagenet-s.py'

model = dict(head=dict(target='gt'))
