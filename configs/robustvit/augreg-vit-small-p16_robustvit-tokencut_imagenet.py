# RobustViT fine-tuning of AugReg ViT-S/16 on TokenCut masks (no annotation) with the paper's
# recipe: Table 5, the same hyper-parameters as `augreg-vit-small-p16_robustvit_imagenet-s.py`; only
# the masks change (docs/faithfulness.md#tokencut-recipe). Masks: docs/tokencut.md, e.g.
#   python tools/tokencut_masks.py data/imagenet/train data/imagenet/tokencut_masks \
#       --weights checkpoints/dino_vitbase16_pretrain.pth --max-per-class 3
# The released TokenCut script's values:
# `augreg-vit-small-p16_robustvit-tokencut-released_imagenet.py`.
_base_ = './augreg-vit-small-p16_robustvit_imagenet-s.py'

tokencut_prefix = dict(img_path='train', mask_path='tokencut_masks')
train_dataloader = dict(dataset=dict(data_prefix=tokencut_prefix))
# Validation (checkpoint choice) on TokenCut masks of the held-out classes too, as released.
val_dataloader = dict(dataset=dict(data_prefix=tokencut_prefix))
test_dataloader = val_dataloader
