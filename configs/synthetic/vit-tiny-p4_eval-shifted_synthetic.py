# Evaluation: top-1 on the SHIFTED test split (the background is always another class's, so the
# background shortcut points to a wrong class):
#
#     .venv/bin/python tools/test.py configs/synthetic/vit-tiny-p4_eval-shifted_synthetic.py CKPT
_base_ = './vit-tiny-p4_pretrain_synthetic.py'

test_dataloader = dict(_delete_=True, **_base_.shifted_test_dataloader)
test_evaluator = dict(type='Accuracy', topk=(1, ))
