# RobustViT ablation: the GAE gradient factor is differentiable (autograd.grad with
# create_graph=True, a second-order step), instead of the paper's constant (FLAG-2). The relevance
# loss then also reaches the last block's MLP, the final norm and the head (reference.md §1.3).
_base_ = '../robustvit/vit-base-p16_robustvit_imagenet-s.py'

model = dict(create_graph=True)
