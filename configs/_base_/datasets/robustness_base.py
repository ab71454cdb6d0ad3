# Shared base of the robustness evaluation configs (configs/robustness/*.py): the PAPER protocol.
#
# Two protocols (docs/evaluation.md; docs/faithfulness.md#evaluation-protocols), chosen by the dataset's
# `protocol` argument, which the metrics read from the dataset metainfo and put in the key prefix
# (`imagenet-a_paper/top1`, `imagenet-a_standard/top1`):
#   paper    (default): 1000-way argmax everywhere; ObjectNet scored against its FIRST mapped class,
#            no border crop; Resize 256 -> CenterCrop 224; mean = std = 0.5 for every model
#            (what the released code did).
#   standard: IN-A / IN-R argmax restricted to their 200 classes; ObjectNet argmax restricted to
#            the 113 overlapping classes, any mapped class counts, 3-px border crop
#            (configs/robustness/*_standard.py); the model's native normalisation.
#
# Normalisation follows mmpretrain's convention: the top-level `data_preprocessor` below applies to
# any model whose own config sets no `model.data_preprocessor`. The paper protocol uses mean = std =
# 127.5 (0.5 on [0, 1]). The default model of these configs is the paper's ViT-B/16 (original
# Google weights), whose native normalisation is ALSO mean = std = 127.5; for a model with another
# native normalisation under the standard protocol set it, e.g. for DeiT
#   --cfg-options data_preprocessor.mean="[123.675,116.28,103.53]" data_preprocessor.std="[58.395,57.12,57.375]"
# (tools/robustness_report.py does this itself from the model's own config).
#
# Data location: each set config names its folder under data/; point elsewhere with
#   --cfg-options test_dataloader.dataset.data_root=/path/to/set
#
# The test loader sets persistent_workers=False and pin_memory=False, so num_workers=0 works on a CPU
# machine through the stock tools.

# mmpretrain's default runtime plus the checkpoint check: a checkpoint whose tensors do not fit the
# model (an unconverted timm file, another architecture) is an error naming the tensors and the fix,
# not the accuracy of a randomly initialised model (mmengine only warns). `allow_unexpected=False`:
# for evaluation every tensor of the file must be used as well.
_base_ = 'mmpretrain::_base_/default_runtime.py'
default_hooks = dict(
    checkpoint_guard=dict(type='CheckpointGuardHook', allow_unexpected=False))

custom_imports = dict(imports=['robustvit_mm'], allow_failed_imports=False)

protocol = 'paper'

paper_mean = [127.5, 127.5, 127.5]
paper_std = [127.5, 127.5, 127.5]
imagenet_mean = [123.675, 116.28, 103.53]
imagenet_std = [58.395, 57.12, 57.375]

# Images are loaded BGR; to_rgb feeds the model RGB as the released code's PIL pipeline did.
data_preprocessor = dict(num_classes=1000, mean=paper_mean, std=paper_std, to_rgb=True)

# The released code: PIL RGB -> Resize(256) (shorter side, bilinear) -> CenterCrop(224).
test_pipeline = [
    dict(type='LoadCheckedImage', imdecode_backend='pillow'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow', interpolation='bilinear'),
    dict(type='CenterCrop', crop_size=224),
    # gt_label_set: every acceptable ImageNet-1k label (ObjectNet); absent elsewhere.
    dict(type='PackInputs', algorithm_keys=['gt_label_set']),
]

test_dataloader = dict(
    batch_size=64,
    num_workers=4,
    persistent_workers=False,  # one pass only; lets num_workers=0 work (see the top of this file)
    pin_memory=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    drop_last=False,
    dataset=dict(protocol=protocol, pipeline=test_pipeline),  # `type` and `data_root` per set
)

# top-1 / top-5 with the set's class subset and any-of labels under the standard protocol.
test_evaluator = dict(type='ShiftedAccuracy', topk=(1, 5))
test_cfg = dict()
