# RobustViT with the GT-label classification term (the paper's ablation; docs/faithfulness.md#confidence-boosting):
# 0.2 * CE(logits, GT label) instead of the model's own argmax; everything else as
# vit-tiny-p4_robustvit_synthetic.py. On this benchmark it is the most robust variant.
_base_ = './vit-tiny-p4_robustvit_synthetic.py'

model = dict(head=dict(target='gt'))
