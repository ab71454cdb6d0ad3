# The fine-tuning schedule (docs/faithfulness.md#optimizer): 50 epochs (the paper, Section 4);
# AdamW with weight decay 1e-4 on ALL parameters (no no-decay groups, no clipping, no warm-up)
# and lr x 0.85 every 2 epochs (the released code). Each model config sets its lr (Table 5).
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=3e-6, weight_decay=1e-4, betas=(0.9, 0.999), eps=1e-8))

param_scheduler = dict(type='StepLR', by_epoch=True, step_size=2, gamma=0.85)

train_cfg = dict(by_epoch=True, max_epochs=50, val_interval=1)
val_cfg = dict()
test_cfg = dict()

# The paper trains with batch 8 on one GPU: `--auto-scale-lr` rescales lr for other total batches.
auto_scale_lr = dict(base_batch_size=8)
