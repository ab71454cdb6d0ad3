# Evaluation: top-1 on the in-distribution test split (the background matches the class with
# p = 0.9, like the training data). Works for the checkpoint of every arm (pretrained, CE fine-tune,
# RobustViT: the same ViT weights; the relevance loss has no parameters):
#
#     .venv/bin/python tools/test.py configs/synthetic/vit-tiny-p4_eval-in-dist_synthetic.py CKPT
_base_ = './vit-tiny-p4_pretrain_synthetic.py'

test_dataloader = dict(_delete_=True, **_base_.in_dist_test_dataloader)
test_evaluator = dict(type='Accuracy', topk=(1, ))
