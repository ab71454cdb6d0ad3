# The released `imagenet_finetune_rrr.py` behaviour for AugReg ViT-L/16, for comparison with
# published numbers: the input-gradient penalty is computed without create_graph, so it is logged
# and enters the validation loss (checkpoint choice) but never reaches the weights (FLAG-1): the
# model is trained by the GT cross-entropy alone, on the unshuffled, class-ordered training loader
# (FLAG-24).
_base_ = './augreg-vit-large-p16_rrr_imagenet-s.py'

model = dict(saliency_loss=dict(reference_compat=True))
train_dataloader = dict(sampler=dict(shuffle=False))
