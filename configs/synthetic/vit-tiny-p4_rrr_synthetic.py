# RRR ("Right for the Right Reasons") baseline on the built-in benchmark: penalty on the input
# gradient of sum_c log softmax, summed over background pixels (create_graph=True); everything else
# as vit-tiny-p4_gradmask_synthetic.py.
_base_ = './vit-tiny-p4_gradmask_synthetic.py'

model = dict(saliency_loss=dict(type='RRRLoss', penalty='sum_square'))
