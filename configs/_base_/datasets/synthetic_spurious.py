# Data pieces of the built-in spurious-background benchmark (24 px by default, 10 classes, 4-px
# patch grid; sizes: DEMO_RECIPE in robustvit_mm/datasets/synthetic/render.py).
#
# Generate the data first (fast, skipped if already there with the same parameters):
#     .venv/bin/python tools/make_synthetic.py work_dirs/demo/data/seed0 --seed 0
#
# This base defines NO train_dataloader / val_dataloader / test_dataloader (nor val/test_evaluator; use
# `accuracy_evaluator` for the ImageFolder splits): an inheriting config picks
# one of the named dataloaders below for each (assigning whole dicts avoids mmengine merging two
# different datasets into one):
#
#   plain CE pretraining (biased):   train_dataloader = _base_.pretrain_dataloader
#                                    val_dataloader   = _base_.in_dist_test_dataloader
#   mask-supervised fine-tuning:     train_dataloader = _base_.finetune_dataloader        (masked/)
#   (RobustViT, GradMask, RRR, ...)  val_dataloader   = _base_.finetune_val_dataloader    (masked_val/)
#   testing:                         test_dataloader  = _base_.in_dist_test_dataloader    (p_match bias)
#                                    test_dataloader  = _base_.shifted_test_dataloader    (never matches)
#   relevance-vs-mask on shifted:    test_dataloader  = _base_.shifted_mask_test_dataloader
#   (same images as shifted_test_dataloader, with fg_mask/ignore_mask from test_shifted_masks/)
#
# `data_root` below is only the default. mmengine does not re-evaluate the dataloader dicts when a
# child config or --cfg-options changes `data_root`, so to point at another generated benchmark call
# `robustvit_mm.datasets.synthetic.set_data_root(cfg, 'work_dirs/demo/data/seed1')` on the loaded
# Config (it rewrites every `*_dataloader.dataset.data_root` and `cfg.data_root`), or set
# `<name>_dataloader.dataset.data_root` for the dataloaders you use.
#
# Augmentation: none. A horizontal flip would keep the 4-px patch-grid alignment, but it
# mirrors the digit glyphs (test glyphs are never mirrored) and turns the 45-degree stripes of some
# background classes into the 135-degree stripes of others, i.e. it would change both cues the
# benchmark is about. Crops/resizes would break the "a patch is all object or all background" property.
# The generator already randomises glyph colour, tile size/position, digit instance, stripe phase, noise.
#
# Loaders are CPU-friendly (num_workers=0 needs persistent_workers=False, pin_memory=False, because
# mmpretrain's stock train.py otherwise sets persistent_workers=True, which num_workers=0 refuses).

custom_imports = dict(imports=['robustvit_mm'], allow_failed_imports=False)

data_root = 'work_dirs/demo/data/seed0'

data_preprocessor = dict(
    num_classes=10,
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
    # LoadCheckedImage (LoadImageFromFile) gives BGR; SyntheticSpuriousDataset also stores BGR.
    to_rgb=True)

# Image-only (ImageFolder splits: pretrain/, test_in_dist/, test_shifted/).
image_pipeline = [
    dict(type='LoadCheckedImage'),
    dict(type='PackInputs'),
]
# Image + exact foreground mask (ImageNet-S layout: masked/, masked_val/, test_shifted + masks).
mask_pipeline = [
    dict(type='LoadCheckedImage'),
    dict(type='LoadForegroundMask'),
    dict(type='PackInputs', algorithm_keys=['fg_mask', 'ignore_mask']),
]


def _loader(batch_size, dataset, shuffle=False):
    """One dataloader of this benchmark (CPU-friendly settings above)."""
    return dict(batch_size=batch_size, num_workers=0, persistent_workers=False, pin_memory=False,
                sampler=dict(type='DefaultSampler', shuffle=shuffle), dataset=dataset)


def _image_folder(prefix, **kwargs):
    """ImageFolder split: labels = indices of the sorted class_* folders."""
    return dict(type='CustomDataset', data_root=data_root, data_prefix=prefix,
                pipeline=image_pipeline, **kwargs)


def _mask_folders(images, masks, **kwargs):
    """ImageNet-S layout split (images + exact masks), labels = ranks of the sorted folders."""
    return dict(type='ImageNetSMaskDataset', data_root=data_root,
                data_prefix=dict(img_path=images, mask_path=masks), split='all',
                labels='sorted_folders', pipeline=mask_pipeline, **kwargs)


pretrain_dataloader = _loader(64, _image_folder('pretrain'), shuffle=True)
finetune_dataloader = _loader(16, _mask_folders('masked/images', 'masked/masks'), shuffle=True)
finetune_val_dataloader = _loader(
    16, _mask_folders('masked_val/images', 'masked_val/masks', test_mode=True))
in_dist_test_dataloader = _loader(128, _image_folder('test_in_dist', test_mode=True))
shifted_test_dataloader = _loader(128, _image_folder('test_shifted', test_mode=True))
shifted_mask_test_dataloader = _loader(
    128, _mask_folders('test_shifted', 'test_shifted_masks', test_mode=True))

# Top-1 accuracy for the ImageFolder splits. val_evaluator / test_evaluator are NOT set here: the
# method runtime base sets them, and mmengine forbids the same key in two bases of one config.
accuracy_evaluator = dict(type='Accuracy', topk=(1, ))
