# RobustViT ablation: the classification term uses the ground-truth label instead of the model's own
# top-1 (reference.md §2.6, `imagenet_ablation_gt.py`): lambda_acc * CE(logits / T, GT label).
# Only the CE target changes; the released ablation script also defaulted to 150 epochs
# (`--cfg-options train_cfg.max_epochs=150`).
_base_ = '../robustvit/vit-base-p16_robustvit_imagenet-s.py'

model = dict(head=dict(target='gt'))
