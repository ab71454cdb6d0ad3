# RRR for DeiT-B/16 with the released script's values (`imagenet_finetune_rrr.py`): the input
# gradient of sum_b sum_c log(softmax(z)_c + 1e-11), squared and SUMMED over the background, made
# live; everything else as `deit-base-p16_gradmask-released_imagenet-s.py`.
_base_ = './deit-base-p16_gradmask-released_imagenet-s.py'

model = dict(saliency_loss=dict(type='RRRLoss', penalty='sum_square'))
