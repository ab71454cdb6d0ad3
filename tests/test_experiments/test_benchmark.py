"""The performance contract: the benchmark compares equal work, and the fast step stays fast-safe.

- the benchmark's equality check (ours vs the released algorithm, losses and gradients) runs on a
  tiny model of every supported family, and it catches a step that computes something else;
- the reference-style step really is the released algorithm (two forwards, one ``autograd.grad``
  per block) and ours is one forward and one ``autograd.grad``;
- ``RelevanceGuidedClassifier.loss`` never waits for the device (no ``.item()``, ``bool(tensor)``...);
- the memory-lean GAE product has the plain expression's values and gradients;
- bf16 autocast keeps the relevance finite and close to float32; ``torch.compile`` of the backbone
  gives the eager numbers; the memory probe runs in a process of its own, even from a process
  that has already run multi-threaded kernels.
"""
import functools
import json
import os

import pytest
import torch

import robustvit_mm  # noqa: F401  (registers)
from robustvit_mm.experiments import benchmark as bench
from robustvit_mm.experiments import benchmark_memory as memory
from robustvit_mm.experiments import benchmark_setup as setup
from robustvit_mm.experiments import benchmark_timing as timing
from robustvit_mm.relevance import gae as gae_module

SIZE, PATCH, EMBED, CLASSES = 32, 4, 48, 10


def tiny_cfg(layers=3):
    return dict(
        type='RelevanceGuidedClassifier',
        backbone=dict(type='VisionTransformer', img_size=SIZE, patch_size=PATCH, drop_rate=0.0,
                      drop_path_rate=0.0,
                      arch=dict(embed_dims=EMBED, num_layers=layers, num_heads=3,
                                feedforward_channels=2 * EMBED)),
        head=dict(type='ConfidenceBoostingHead', num_classes=CLASSES, in_channels=EMBED),
        relevance_loss=dict(type='RelevanceFinetuneLoss'))


@pytest.fixture
def tiny():
    model = setup.build_model(tiny_cfg())
    inputs, samples = setup.make_batch(model, 3)
    return model, inputs, samples


# ----------------------------------------------------------------------------- equal work
TRAINING_FAMILIES = ['vit', 'deit3', 'beit', 'beit_cls', 'eva02', 'timm', 'timm_reg', 'timm_beit',
                     'timm_eva', 'timm_eva_reg']


@pytest.mark.parametrize('family', TRAINING_FAMILIES)
def test_training_step_equals_the_reference_style_step(tiny_relevance_model, family):
    """Per family: RelevanceGuided[Timm]Classifier's one-forward step gives the losses and every
    parameter gradient of the released algorithm's step (per-block gradients, two forwards)."""
    model = tiny_relevance_model(family, img_size=16, patch=4)
    inputs, samples = setup.make_batch(model, 3)
    report = timing.check_equal_work(model, inputs, samples, rtol=1e-4)
    assert report['worst_loss_rel'] <= 1e-4 and report['worst_grad_rel'] <= 1e-4
    # Against the reference's relevance in float64, ours' own float32 error is far smaller (the
    # float32 reference loses digits with a patch-average head: up to 6e-5 for timm BEiT-v2).
    exact = dict(timing.LOSS_FNS, reference=functools.partial(timing.reference_losses,
                                                             dtype=torch.float64))
    tight = timing.check_equal_work(model, inputs, samples, rtol=1e-5, variant_fns=exact)
    assert report['num_params'] == sum(1 for p in model.parameters() if p.requires_grad)
    assert report['loss'] > 0
    assert all(p.grad is None for p in model.parameters())  # left clean for the timing
    print(f'{family}: losses within {report["worst_loss_rel"]:.1e}, gradients within '
          f'{report["worst_grad_rel"]:.1e} relative; float64 reference: '
          f'{tight["worst_loss_rel"]:.1e}, {tight["worst_grad_rel"]:.1e}')


def test_equality_check_catches_a_step_that_does_other_work(tiny):
    model, inputs, samples = tiny

    def wrong_target(model, inputs, samples):  # explains the prediction instead of the GT class
        total, losses = timing.ours_losses(model, inputs, samples)
        model.relevance_target = 'pred'
        try:
            return timing.ours_losses(model, inputs, samples)
        finally:
            model.relevance_target = 'gt'

    def no_classification(model, inputs, samples):  # drops the CE term
        total, losses = timing.reference_losses(model, inputs, samples)
        losses = {k: v for k, v in losses.items() if k != 'loss_cls'}
        return sum(losses.values()), dict(losses, loss_cls=torch.zeros(()))

    for wrong in (wrong_target, no_classification):
        fns = dict(timing.LOSS_FNS, reference=wrong)
        with pytest.raises(AssertionError, match='do not compute the same step'):
            timing.check_equal_work(model, inputs, samples, variant_fns=fns)


def _count_calls(monkeypatch, model):
    counts = dict(grad=0, forward=0)
    real_grad = torch.autograd.grad

    def counting_grad(*args, **kwargs):
        counts['grad'] += 1
        return real_grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, 'grad', counting_grad)
    model.backbone.patch_embed.register_forward_hook(
        lambda *args: counts.__setitem__('forward', counts['forward'] + 1))
    return counts


@pytest.mark.parametrize('variant, forwards, grads', [('ours', 1, 1), ('reference', 2, 3),
                                                      ('plain', 1, 0)])
def test_variants_do_the_passes_they_claim(monkeypatch, tiny, variant, forwards, grads):
    model, inputs, samples = tiny  # 3 blocks: the released code calls autograd.grad per block
    counts = _count_calls(monkeypatch, model)
    total, _ = timing.LOSS_FNS[variant](model, inputs, samples)
    assert (counts['forward'], counts['grad']) == (forwards, grads)
    total.backward()


def test_reference_relevance_matches_the_engine(tiny):
    from robustvit_mm.relevance import gae_relevance
    model, inputs, samples = tiny
    targets = torch.cat([s.gt_label for s in samples])
    expected, _ = gae_relevance(model, inputs, targets)
    torch.testing.assert_close(timing.reference_relevance(model, inputs, targets).detach(),
                               expected.detach(), atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- no syncs
SYNCING = ('item', 'tolist', 'cpu', 'numpy', '__bool__', '__float__', '__int__', '__index__')


def test_loss_never_reads_a_tensor_back_to_the_host(monkeypatch, tiny):
    model, inputs, samples = tiny
    called = []
    for name in SYNCING:
        def trap(self, *args, _name=name, **kwargs):
            called.append(_name)
            raise AssertionError(f'Tensor.{_name} called inside the training step')
        monkeypatch.setattr(torch.Tensor, name, trap)
    losses = model.loss(inputs, samples)
    total, _ = model.parse_losses(losses)
    total.backward()
    monkeypatch.undo()
    assert not called


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_loss_does_not_synchronise_cuda():
    model = setup.build_model(tiny_cfg(), 'cuda')
    inputs, samples = setup.make_batch(model, 3, 'cuda')
    model.loss(inputs, samples)  # warm-up (lazy CUDA initialisation may sync)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')
    try:
        losses = model.loss(inputs, samples)
        total, _ = model.parse_losses(losses)
        total.backward()
    finally:
        torch.cuda.set_sync_debug_mode(0)


# ----------------------------------------------------------------------------- the GAE product
def test_grad_weighted_attention_has_the_plain_values_and_gradients():
    torch.manual_seed(0)
    attn = torch.rand(2, 3, 5, 5).softmax(-1)
    attn[0, 0, 0, :2] = 0.0  # G * A == 0 exactly: clamp passes the gradient there
    attn.requires_grad_()
    grad = torch.randn(2, 3, 5, 5)
    upstream = torch.randn(2, 5, 5)
    plain = (grad * attn).clamp(min=0).mean(dim=1)
    (expected,) = torch.autograd.grad((plain * upstream).sum(), attn)
    lean = gae_module.grad_weighted_attention(attn, grad)
    (got,) = torch.autograd.grad((lean * upstream).sum(), attn)
    assert torch.equal(lean, plain) and torch.equal(got, expected)


def test_grad_weighted_attention_keeps_no_new_map_for_backward():
    attn = torch.rand(2, 3, 7, 7, requires_grad=True).softmax(-1)
    grad = torch.randn(2, 3, 7, 7)
    known = {attn.untyped_storage().data_ptr(), grad.untyped_storage().data_ptr()}
    new_bytes = []

    def pack(tensor):
        if tensor.untyped_storage().data_ptr() not in known:
            new_bytes.append(tensor.untyped_storage().nbytes())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        gae_module.grad_weighted_attention(attn, grad)
    assert sum(new_bytes) == 0  # the plain expression keeps G * A: one more (B, H, N, N) map


def test_create_graph_path_is_still_second_order():
    attn = torch.rand(1, 2, 4, 4, requires_grad=True)
    grad = torch.randn(1, 2, 4, 4, requires_grad=True)
    gae_module.grad_weighted_attention(attn, grad).sum().backward()
    assert grad.grad is not None and attn.grad is not None


# ----------------------------------------------------------------------------- precision
def test_bf16_autocast_keeps_the_relevance_finite_and_close_to_float32(tiny):
    model, inputs, samples = tiny
    _, reference = model._relevance_forward(inputs, samples, keep_graph=False)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        logits, relevance = model._relevance_forward(inputs, samples, keep_graph=True)
        losses = model.loss(inputs, samples)
    assert relevance.dtype == torch.float32 and torch.isfinite(relevance).all()
    assert relevance.min() >= 0 and relevance.max() <= 1
    # bf16 keeps ~3 significant digits through the network; the map itself stays in [0, 1]
    assert (relevance.detach() - reference).abs().max() < 0.1
    assert torch.corrcoef(torch.stack([relevance.detach().flatten(),
                                       reference.flatten()]))[0, 1] > 0.98
    total, _ = model.parse_losses(losses)
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_amp_optim_wrapper_needs_an_accelerator_or_runs_the_step():
    from mmengine.optim import AmpOptimWrapper
    model = setup.build_model(tiny_cfg(), 'cuda' if torch.cuda.is_available() else 'cpu')
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    if not torch.cuda.is_available():
        # mmengine 0.10.7 asserts an accelerator: on CPU use torch.autocast (tested above).
        with pytest.raises(AssertionError, match='only available'):
            AmpOptimWrapper(optimizer=optimizer, dtype='bfloat16')
        return
    for dtype in ('bfloat16', 'float16'):
        wrapper = AmpOptimWrapper(optimizer=optimizer, dtype=dtype)
        inputs, samples = setup.make_batch(model, 3, 'cuda')
        with wrapper.optim_context(model):
            logits, relevance = model._relevance_forward(inputs, samples, keep_graph=True)
            losses = model.loss(inputs, samples)
        assert relevance.dtype == torch.float32 and torch.isfinite(relevance).all()
        total, _ = model.parse_losses(losses)
        wrapper.update_params(total)
        assert torch.isfinite(total)


# ----------------------------------------------------------------------------- torch.compile
@pytest.mark.slow
def test_compiled_backbone_gives_the_eager_step():
    import copy
    eager = setup.build_model(tiny_cfg())
    inputs, samples = setup.make_batch(eager, 2)
    compiled = copy.deepcopy(eager)
    setup.compile_backbone(compiled, backend='aot_eager')  # no C++ toolchain needed
    for model in (eager, compiled):
        for _ in range(2):  # the second call runs the cached graphs
            model.zero_grad(set_to_none=True)
            total, _ = timing.ours_losses(model, inputs, samples)
            total.backward()
    torch.testing.assert_close(timing.ours_losses(compiled, inputs, samples)[0],
                               timing.ours_losses(eager, inputs, samples)[0])
    for (name, p), q in zip(compiled.named_parameters(), eager.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7, msg=name)


# ----------------------------------------------------------------------------- the run
def test_memory_is_measured_in_a_process_of_its_own(tiny):
    """This pytest process has run multi-threaded kernels (the fixture's model and batch, and the
    forward below with 2 threads): a plain fork of it could hang the child. The probe's process
    comes from a fork server, so it answers (and a hang would be a RuntimeError, not a stall)."""
    model, inputs, _ = tiny
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model(inputs, mode='tensor').sum().backward()  # OpenMP pool of this process is live
        # default threads in the probe: the case that hung when the probe was a plain fork
        result = memory.measure_memory_cpu('ours', tiny_cfg(), 2, timeout_s=300)
        plain = memory.measure_memory_cpu('plain', tiny_cfg(), 2, timeout_s=300)
    finally:
        torch.set_num_threads(threads)
    assert result['peak'] > 0 and 0 < result['working'] <= result['peak']
    # ours records the maps and their gradients: more working memory than the plain step's
    assert result['working'] > plain['working']


def test_memory_probe_reports_a_failing_child():
    with pytest.raises(RuntimeError, match="memory measurement of 'ours' failed"):
        memory.measure_memory_cpu('ours', dict(tiny_cfg(), backbone=None), 2, timeout_s=600)


@pytest.mark.slow
def test_quick_run_reports_every_ratio(repo_root):
    threads = torch.get_num_threads()
    config = os.path.join(repo_root, 'configs/robustvit/vit-base-p16_robustvit_imagenet-s.py')
    try:
        result = bench.run_benchmark(config, quick=True, warmup=0, repeats=1, threads=1)
    finally:
        torch.set_num_threads(threads)
    json.dumps(result)  # what --json writes
    for key in ('speedup_vs_reference', 'ratio_vs_plain', 'memory_ratio_vs_plain',
                'gae_ratio_vs_fwd_bwd', 'model', 'batch', 'device'):
        assert result[key] is not None, key
    assert result['check']['worst_grad_rel'] <= 1e-4
    assert result['machine_info']['cpu'] in bench.format_table(result)


def test_machine_info_describes_this_machine():
    from robustvit_mm.experiments import describe_machine, machine_info
    info = machine_info()
    assert info['torch'] == torch.__version__ and info['torch_threads'] == torch.get_num_threads()
    assert info['cores'] >= 1 and info['cpu']
    assert (info['gpu'] is None) == (not torch.cuda.is_available())
    line = describe_machine(info)
    assert info['cpu'] in line and f'torch {torch.__version__}' in line
