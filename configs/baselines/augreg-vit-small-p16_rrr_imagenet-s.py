# RRR baseline for AugReg ViT-S/16 (reference.md §4, `imagenet_finetune_rrr.py`): penalty on the
# input gradient of sum_b sum_c log(softmax(z)_c + 1e-11), SUM over pixels, with create_graph=True
# (the released penalty was inert, FLAG-1). Everything else as the GradMask config of the same
# model.
_base_ = './augreg-vit-small-p16_gradmask_imagenet-s.py'

model = dict(saliency_loss=dict(type='RRRLoss'))
