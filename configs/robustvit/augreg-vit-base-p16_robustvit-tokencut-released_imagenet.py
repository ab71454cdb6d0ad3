# TokenCut fine-tuning of AugReg ViT-B/16 with the released TokenCut script's values
# (`imagenet_finetune_tokencut.py`; docs/faithfulness.md#tokencut-recipe): lambda_seg 0.1,
# lambda_acc 1, lambda_bg 1, lambda_fg 0.3, batch 10, 150 epochs. The lr stays the model's RobustViT
# lr (the script's single default is 3e-6), here with batch 10.
_base_ = './augreg-vit-base-p16_robustvit-tokencut_imagenet.py'

model = dict(
    loss=dict(loss_weight=1.0),  # lambda_acc
    relevance_loss=dict(
        loss_weight=0.1,  # lambda_seg
        background_weight=1.0,  # lambda_bg (lambda_fg 0.3 unchanged)
    ),
)

train_dataloader = dict(batch_size=10)
val_dataloader = dict(batch_size=10)
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=150)
auto_scale_lr = dict(base_batch_size=10)
