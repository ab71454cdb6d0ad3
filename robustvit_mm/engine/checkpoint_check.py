"""One check that a checkpoint fits a model, for every path that loads weights.

mmengine loads checkpoints with ``strict=False``: tensors that do not fit are a warning in the log and
the run evaluates (or draws the relevance of) a randomly initialised model, exit code 0. Every path of
this package that loads weights goes through :func:`check_state_dict`: the stock ``train.py`` /
``test.py`` through ``CheckpointGuardHook`` (runtime and robustness base configs), and the report, the
relevance inferencer and the demo through :func:`load_checked_checkpoint`.
"""
import re

from mmengine.logging import print_log

# Names that tell what a checkpoint that does not fit probably is (for the hint in the message).
_TIMM_VIT_KEY = re.compile(r'^(blocks\.\d+\.|patch_embed\.proj\.|cls_token$|pos_embed$)')
_MMPRETRAIN_VIT_KEY = re.compile(r'^backbone\.(layers\.\d+\.|patch_embed\.projection\.|cls_token$)')
_CNN_KEY = re.compile(r'(^|\.)(conv\d*|bn\d*|downsample|layer\d+|stem|stages?)\.|'
                      r'\.(running_mean|running_var)$')


def checkpoint_mismatch(model_state, checkpoint_state):
    """``(shape_mismatches, missing, unexpected)`` between a model's and a checkpoint's tensors."""
    shapes = []
    for key, tensor in model_state.items():
        if key in checkpoint_state and hasattr(checkpoint_state[key], 'shape'):
            if tuple(checkpoint_state[key].shape) != tuple(tensor.shape):
                shapes.append((key, tuple(checkpoint_state[key].shape), tuple(tensor.shape)))
    missing = [k for k in model_state if k not in checkpoint_state]
    unexpected = [k for k in checkpoint_state if k not in model_state]
    return shapes, missing, unexpected


def _listing(items, limit=5):
    text = ', '.join(items[:limit])
    return text + (f', ... ({len(items)} in all)' if len(items) > limit else '')


def describe_model(model):
    """'ImageClassifier with VisionTransformer (embed_dims=48, 3 layers)'."""
    backbone = getattr(model, 'backbone', None) or getattr(model, 'model', None)
    what = type(model).__name__
    if backbone is not None:
        what += f' with {type(backbone).__name__}'
        dims = getattr(backbone, 'embed_dims', None)
        layers = getattr(backbone, 'num_layers', None)
        if dims is not None:
            what += f' (embed_dims={dims}' + (f', {layers} layers)' if layers else ')')
    return what


def likely_fix(model_keys, unexpected):
    """A sentence saying what the non-fitting checkpoint probably is and what to do."""
    model_is_mmpretrain_vit = any(k.startswith('backbone.') for k in model_keys)
    if model_is_mmpretrain_vit and any(_TIMM_VIT_KEY.match(k) for k in unexpected):
        return ('The file holds timm-format ViT weights (e.g. blocks.0.attn.qkv.weight): convert '
                'them with tools/convert_timm_weights.py (--target mmpretrain) for this config, or '
                'use a TimmClassifier config.')
    if not model_is_mmpretrain_vit and any(_MMPRETRAIN_VIT_KEY.match(k) for k in unexpected):
        return ('The file holds mmpretrain-format weights (backbone.layers...) but the model is a '
                'timm model: wrong config; use the mmpretrain config the weights were made for.')
    if unexpected and sum(bool(_CNN_KEY.search(k)) for k in unexpected) > len(unexpected) // 2:
        return ('The file looks like a convolutional network\'s checkpoint (conv/bn/layerN '
                'tensors): wrong config; use the config of the model it was trained with.')
    return ('Was it saved for another architecture or size? Use the config of the model it was '
            'trained with (for timm weights, convert them with tools/convert_timm_weights.py for '
            'this config).')


_INPUT_SIZE_KEY = re.compile(r'(^|\.)(pos_embed|rope\.freqs_(cos|sin))$')


def input_size_hint(model, shapes):
    """For position tables of another size: timm weights converted without ``--img-size``."""
    if not any(_INPUT_SIZE_KEY.search(key) for key, _, _ in shapes):
        return ''
    size = getattr(getattr(model, 'backbone', None), 'img_size', None)
    if isinstance(size, (tuple, list)):
        size = size[0] if len(set(size)) == 1 else None
    option = f'--img-size {size}' if isinstance(size, int) else "--img-size <the config's img_size>"
    return ('The position embeddings are made for another input size: timm weights converted '
            'without --img-size keep the checkpoint\'s own size. Convert them again with '
            f'tools/convert_timm_weights.py {option}. ')


def strip_wrapper_prefix(state):
    """DDP saves ``module.<name>``; mmengine strips it when loading, so compare the same names."""
    return {re.sub(r'^module\.', '', k): v for k, v in state.items()}


def state_dict_of(checkpoint, source='checkpoint'):
    """The state dict inside an mmengine checkpoint (``state_dict`` key) or a bare state dict."""
    state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise TypeError(f'{source} holds a {type(state).__name__}, not a state dict')
    return strip_wrapper_prefix(state)


def check_state_dict(model, state, source, *, allow_missing=False, allow_unexpected=False):
    """Raise ``ValueError`` unless ``state`` fits ``model``; log what is allowed.

    Shape mismatches are always an error. ``allow_missing``: model tensors absent from the file keep
    their initial values (unless the file has none of them). ``allow_unexpected``: tensors of the file
    the model lacks are ignored. Returns ``(missing, unexpected)``.
    """
    model_state = model.state_dict()
    shapes, missing, unexpected = checkpoint_mismatch(model_state, state)
    problems = []
    if shapes:
        problems.append(f'{len(shapes)} tensor(s) differ in shape: ' + _listing(
            [f'{k} is {tuple(c)} in the file but {tuple(m)} in the model' for k, c, m in shapes]))
    if missing and (not allow_missing or len(missing) == len(model_state)):
        problems.append(f'{len(missing)} model tensor(s) are not in the file: ' + _listing(missing))
    if unexpected and (problems or not allow_unexpected):
        problems.append(f'{len(unexpected)} tensor(s) of the file are not in the model: '
                        + _listing(unexpected))
    if problems:
        raise ValueError(
            f'Checkpoint {source} does not fit the model {describe_model(model)}: '
            + '; '.join(problems) + '. ' + input_size_hint(model, shapes)
            + likely_fix(list(model_state), unexpected)
            + ' Nothing was loaded.')
    for label, keys in (('model tensors are not in the file (they keep their initial values)',
                         missing), ('tensors of the file are not in the model', unexpected)):
        if keys:
            print_log(f'{source}: {len(keys)} {label}: {_listing(keys)}', logger='current',
                      level=30)
    return missing, unexpected


def load_checked_checkpoint(model, path, allow_partial=False, map_location='cpu'):
    """Load ``path`` into ``model`` after :func:`check_state_dict`; return the checkpoint dict.

    The file is read through mmengine's checkpoint loaders (local files, URLs, the package's safe
    loading). ``allow_partial=True`` accepts missing and extra tensors (they are logged), never
    tensors of another shape.
    """
    from mmengine.runner.checkpoint import _load_checkpoint, _load_checkpoint_to_model
    checkpoint = _load_checkpoint(path, map_location=map_location)
    state = state_dict_of(checkpoint, f'checkpoint {path!r}')
    check_state_dict(model, state, repr(path), allow_missing=allow_partial,
                     allow_unexpected=allow_partial)
    _load_checkpoint_to_model(model, {'state_dict': state}, strict=not allow_partial)
    return checkpoint if isinstance(checkpoint, dict) else {'state_dict': state}


def init_checked_model(config, checkpoint=None, device=None, allow_partial=False):
    """Build a classifier from a config file, a ``Config`` or an mmpretrain model name
    (``mmpretrain.apis.get_model``, so ``model._config`` / ``_dataset_meta`` are set as its
    inferencers expect), then load ``checkpoint`` through :func:`load_checked_checkpoint`.

    The config's ``custom_imports`` are honoured. Without a checkpoint the model keeps its
    ``init_weights()`` values and a warning says so (a fresh ViT head is zero: flat relevance).
    """
    from mmengine.config import Config
    from mmengine.utils import import_modules_from_strings
    from mmpretrain.apis import get_model
    if isinstance(config, str) and config.endswith('.py'):
        config = Config.fromfile(config)
    if isinstance(config, Config) and config.get('custom_imports'):
        import_modules_from_strings(**config.custom_imports)
    model = get_model(config, pretrained=False)
    if checkpoint:
        classes = checkpoint_classes(load_checked_checkpoint(model, checkpoint, allow_partial))
        if classes:
            model._dataset_meta = dict(model._dataset_meta or {}, classes=classes)
    else:
        model.init_weights()
        print_log('no checkpoint given: the model has the weights of init_weights() (a fresh ViT '
                  'head is all zeros and gives flat, all-zero relevance)', logger='current',
                  level=30)
    if device is not None:
        model.to(device)
    return model.eval()


def checkpoint_classes(checkpoint):
    """Class names saved by the runner in ``meta.dataset_meta.classes``, or None."""
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    classes = ((meta or {}).get('dataset_meta') or {}).get('classes')
    return list(classes) if classes else None


__all__ = ['check_state_dict', 'checkpoint_mismatch',
           'load_checked_checkpoint', 'describe_model', 'likely_fix', 'state_dict_of',
           'checkpoint_classes', 'init_checked_model']
