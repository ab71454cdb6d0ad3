# (c) RobustViT fine-tuning on the built-in benchmark: the ViT-B/16 RobustViT config, unchanged but
# for the model size, the data, the learning rate and the number of epochs.
#
# Inherited from configs/robustvit/vit-base-p16_robustvit_imagenet-s.py: RelevanceGuidedClassifier
# (GAE relevance of the GT class, one forward + one autograd.grad), RelevanceFinetuneLoss
# 0.8 * (2 * L_bg + 0.3 * L_fg), ConfidenceBoostingHead (0.2 * CE(logits / 1, own argmax)), AdamW
# wd 1e-4, StepLR x0.85 every 2 epochs, validation loss on held-out masked images + the
# lowest-val-loss checkpoint rule, SaveClassSplitHook, GAERelevanceHook pictures.
#
#     .venv/bin/python tools/train.py configs/synthetic/vit-tiny-p4_robustvit_synthetic.py
#         (loads work_dirs/vit-tiny-p4_pretrain_synthetic/epoch_8.pth; see the pretrain config)
#
# Data: 3 masked images per class, as the paper (masked/, background matches the class with p = 0.9,
# i.e. the SAME bias as pretraining: the masks are the only extra information), validation on
# masked_val/ (5 per class).
#
# Why the synthetic data base is read with Config.fromfile instead of listed in `_base_`: both the
# ViT-B config (through its ImageNet-S data base) and configs/_base_/datasets/synthetic_spurious.py
# define `custom_imports`, `data_root` and `data_preprocessor`, and mmengine forbids a key in two
# bases of one config. Reading the file here and picking its named dataloaders is equivalent.
from mmengine import Config

_base_ = '../robustvit/vit-base-p16_robustvit_imagenet-s.py'

_data = Config.fromfile('{{ fileDirname }}/../_base_/datasets/synthetic_spurious.py')

load_from = 'work_dirs/vit-tiny-p4_pretrain_synthetic/epoch_8.pth'
data_root = _data.data_root

# Model size: the pretrained ViT tiny-p4 (24 px, 4-px patches, 4 blocks, width 96, 6 heads).
model = dict(
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=96, num_layers=4, num_heads=6,
                  feedforward_channels=192),
        img_size=24,
        patch_size=4),
    head=dict(num_classes=10, in_channels=96))
data_preprocessor = dict(num_classes=10)   # mean = std = 127.5, to_rgb: the released code's

# Data: the synthetic named dataloaders replace the ImageNet-S ones (`_delete_`: no key of the
# ImageNet-S dataset dicts may survive the merge).
train_dataloader = dict(_delete_=True, **_data.finetune_dataloader)
train_dataloader.update(batch_size=10)      # 30 images = 3 iterations per epoch
val_dataloader = dict(_delete_=True, **_data.finetune_val_dataloader)
val_dataloader.update(batch_size=50)
test_dataloader = dict(_delete_=True, **_data.shifted_mask_test_dataloader)

# Learning rate, batch and length (the schedule's shape, AdamW, weight decay: the released code's).
optim_wrapper = dict(optimizer=dict(lr=3e-4))
train_cfg = dict(max_epochs=60, val_interval=10)
auto_scale_lr = dict(base_batch_size=10)

default_hooks = dict(logger=dict(interval=25))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)

del Config, _data
