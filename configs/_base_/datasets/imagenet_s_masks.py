# ImageNet-S foreground masks for RobustViT fine-tuning (paper Sec. 4; docs/faithfulness.md#class-split).
#
# ImageNet-S919 `train-semi-segmentation` masks (10 masked ImageNet-*train* images per class) pair with
# the ImageNet-1k `train` images of the same wnid and file stem:
#   <data_root>/ImageNetS919/train-semi-segmentation/<wnid>/<name>.png
#   <data_root>/train/<wnid>/<name>.JPEG
# Train = 500 classes x 3 masks (sorted files, classes sorted then shuffled with split_seed);
# val = the 414 held-out classes x 1 mask. The class lists are written to
# <work_dir>/imagenet_s_split.json by SaveClassSplitHook. Train and val must share num_classes,
# split_seed and class_order ('shuffled'; 'sorted' = the paper's literal "first 500 classes"), or
# split_file (a run's imagenet_s_split.json, to reuse its split): override both sides, or training
# refuses to start.
# Both sides also use one label space (`labels`, ImageNet-1k indices here).
#
# Masks are checked as they load: one without an object pixel, or one that looks inverted (the
# "object" covers over 3/4 of the picture and touches all four borders), is an error naming the file.
# For data where that is real: `dataset.empty_masks='skip'` (left out and counted in the dataset's
# summary line), `LoadForegroundMask(allow_inverted=True)`.
#
# Your own location: override `data_root` AND the dataloaders' `dataset.data_root` (a base-file
# variable is substituted when this file is read), e.g.
#   --cfg-options train_dataloader.dataset.data_root=/data/imagenet \
#                 val_dataloader.dataset.data_root=/data/imagenet test_dataloader.dataset.data_root=/data/imagenet
#
# val_evaluator / test_evaluator are set by the method config (the relevance-guided val loss /
# metrics). Batch Mixup/CutMix must stay off (they would break the image/mask pairing).
#
# The stock train.py/test.py add persistent_workers=True to every dataloader that does not set it,
# and torch refuses that with num_workers=0. The loaders here set persistent_workers=False, so
# `--cfg-options train_dataloader.num_workers=0 val_dataloader.num_workers=0` works on a CPU machine
# (with 4 workers the cost is restarting them once per epoch, negligible next to the epoch itself).

custom_imports = dict(imports=['robustvit_mm'], allow_failed_imports=False)

dataset_type = 'ImageNetSMaskDataset'
data_root = 'data/imagenet'
data_prefix = dict(img_path='train', mask_path='ImageNetS919/train-semi-segmentation')

# The released code normalises every model with mean = std = 0.5 (faithfulness.md#normalisation);
# images are loaded BGR. These are robustvit_mm.datasets.PAPER_NORM.
data_preprocessor = dict(
    num_classes=1000,
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
    to_rgb=True,
)

train_pipeline = [
    # Stored pixels, EXIF orientation ignored: ImageNet-S masks are drawn on them (and the authors'
    # PIL loader ignored it too); LoadForegroundMask turns the mask by the same rule as the image.
    dict(type='LoadCheckedImage', color_type='color_ignore_orientation'),
    # ImageNet-S id = G*256 + R; ignore (1000) pixels are background in fg_mask
    # (docs/faithfulness.md#ignore-pixels).
    dict(type='LoadForegroundMask', ignore_pixels='background'),
    # Same random crop/flip for image and masks; masks resized bilinear without antialias
    # (docs/faithfulness.md#reverse-mask).
    dict(
        type='WithMask',
        mask_interpolation='bilinear',
        transforms=[
            # Absolute 256x256 resize: aspect-distorting, as the authors' code
            # (docs/faithfulness.md#train-transform). The image
            # uses PIL bilinear like the authors' PIL pipeline.
            dict(type='Resize', scale=(256, 256), keep_ratio=False,
                 backend='pillow', interpolation='bilinear'),
            dict(type='RandomCrop', crop_size=224),
            dict(type='RandomFlip', prob=0.5, direction='horizontal'),
        ]),
    dict(type='PackInputs', algorithm_keys=['fg_mask', 'ignore_mask']),
]

val_pipeline = [
    # Stored pixels, EXIF orientation ignored: ImageNet-S masks are drawn on them (and the authors'
    # PIL loader ignored it too); LoadForegroundMask turns the mask by the same rule as the image.
    dict(type='LoadCheckedImage', color_type='color_ignore_orientation'),
    dict(type='LoadForegroundMask', ignore_pixels='background'),
    dict(
        type='WithMask',
        mask_interpolation='bilinear',
        transforms=[
            # Shorter side 256 (aspect kept), then the central 224x224.
            dict(type='ResizeEdge', scale=256, edge='short',
                 backend='pillow', interpolation='bilinear'),
            dict(type='CenterCrop', crop_size=224),
        ]),
    dict(type='PackInputs', algorithm_keys=['fg_mask', 'ignore_mask']),
]

train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=False,  # see the top of this file
    sampler=dict(type='DefaultSampler', shuffle=True),
    drop_last=False,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=data_prefix,
        split='train',
        num_classes=500,
        num_samples=3,
        split_seed=0,
        class_order='shuffled',
        labels='imagenet1k',
        pipeline=train_pipeline,
    ),
)

val_dataloader = dict(
    batch_size=10,
    num_workers=4,
    persistent_workers=False,  # see the top of this file
    sampler=dict(type='DefaultSampler', shuffle=False),
    drop_last=False,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=data_prefix,
        split='val',  # the held-out classes, 1 mask each
        num_classes=500,
        num_samples=3,
        split_seed=0,
        class_order='shuffled',
        labels='imagenet1k',
        pipeline=val_pipeline,
    ),
)

test_dataloader = val_dataloader

# val_evaluator = ...   (set by the method config)
# test_evaluator = ...  (set by the method config)

# SaveClassSplitHook (the split file, and the check that train and val share one class split) is a
# default hook of configs/_base_/robustvit_runtime.py.
