"""Panels for relevance figures: heat maps, overlays, masked images. All arrays are RGB uint8 (H, W, 3).

OpenCV colour maps come out BGR; we convert once here so every caller gets RGB (the reference wrote
RGB arrays with cv2.imwrite and so saved swapped colours).
"""
import cv2
import numpy as np
import torch


def to_numpy_map(relevance):
    """(1, H, W) / (H, W) tensor or array in [0, 1] -> float32 (H, W) array."""
    if torch.is_tensor(relevance):
        relevance = relevance.detach().float().cpu().numpy()
    relevance = np.asarray(relevance, dtype=np.float32)
    return relevance.reshape(relevance.shape[-2:])


def denormalize_image(inputs, mean, std):
    """(3, H, W) normalised tensor -> uint8 (H, W, 3) in the inputs' channel order (mean/std 0-255).
    To get RGB whatever the preprocessor did, use :func:`inputs_to_rgb`."""
    # .cpu(): a preprocessor on a GPU holds its mean/std there; the picture is made on the CPU.
    mean = torch.as_tensor(mean, dtype=torch.float32).cpu().view(-1, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32).cpu().view(-1, 1, 1)
    image = inputs.detach().float().cpu() * std + mean
    return image.clamp(0, 255).round().byte().permute(1, 2, 0).numpy()


def channels_converted(data_preprocessor):
    """Whether ``data_preprocessor`` flipped the loaded (BGR) channels to RGB.

    mmpretrain's ``ClsDataPreprocessor`` stores the switch as ``to_rgb``; mmengine's
    ``ImgDataPreprocessor`` family (and mmpretrain's self-supervised preprocessors built on it) as
    ``_channel_conversion``. Anything else is refused rather than guessed: a guess swaps red and blue.
    """
    for name in ('to_rgb', '_channel_conversion'):
        value = getattr(data_preprocessor, name, None)
        if value is not None:
            return bool(value)
    raise TypeError(f'{type(data_preprocessor).__name__} has neither `to_rgb` nor '
                    '`_channel_conversion`; cannot tell whether its inputs are RGB or BGR')


def inputs_to_rgb(inputs, data_preprocessor):
    """Normalised model inputs -> displayable RGB uint8.

    ``inputs``: (3, H, W) or (B, 3, H, W), as ``data_preprocessor`` produced them from images loaded
    by ``LoadImageFromFile`` (BGR). Returns (H, W, 3) or (B, H, W, 3), RGB, whatever the
    preprocessor's mean/std and channel conversion were.
    """
    if inputs.dim() not in (3, 4) or inputs.shape[-3] != 3:
        raise ValueError(f'inputs_to_rgb: expected (3, H, W) or (B, 3, H, W), got {tuple(inputs.shape)}')
    converted = channels_converted(data_preprocessor)
    if getattr(data_preprocessor, '_enable_normalize', True):
        mean, std = data_preprocessor.mean.flatten(), data_preprocessor.std.flatten()
    else:
        mean, std = torch.zeros(3), torch.ones(3)
    batch = inputs if inputs.dim() == 4 else inputs[None]
    images = np.stack([denormalize_image(x, mean, std) for x in batch])
    if not converted:
        images = images[..., ::-1]   # still BGR, as cv2 loaded them
    images = np.ascontiguousarray(images)
    return images if inputs.dim() == 4 else images[0]


def heatmap(relevance):
    """Relevance in [0, 1] -> JET colour map, RGB uint8."""
    gray = (np.clip(to_numpy_map(relevance), 0, 1) * 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(gray, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def colour_bar(height, width=10):
    """A vertical JET bar, relevance 1 at the top and 0 at the bottom: RGB uint8 (height, width, 3)."""
    values = np.linspace(1, 0, height, dtype=np.float32)[:, None].repeat(width, axis=1)
    return heatmap(values)


def put_text(canvas, text, position, height, align='center', colour=(0, 0, 0)):
    """Write ``text`` into RGB uint8 ``canvas`` in place: a font ``height`` px tall (capitals about
    0.7 of it), the left edge at ``position[0]``, the top / centre / bottom (``align``) of its
    ``height``-px line at ``position[1]``. OpenCV's font, not matplotlib's: a few milliseconds a
    figure, so a whole data set can be drawn."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = cv2.getFontScaleFromHeight(font, int(height), 1)
    (_, text_height), _ = cv2.getTextSize(text, font, scale, 1)
    x, y = position
    baseline = dict(top=y + text_height, center=y + text_height // 2, bottom=y)[align]
    cv2.putText(canvas, text, (int(x), int(baseline)), font, scale, colour, 1, cv2.LINE_AA)
    return canvas


def overlay(image, relevance, alpha=0.5):
    """Blend the relevance heat map over the image (resized to the image if needed)."""
    heat = heatmap(relevance)
    if heat.shape[:2] != image.shape[:2]:
        heat = cv2.resize(heat, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    return cv2.addWeighted(image, 1 - alpha, heat, alpha, 0)


def masked(image, mask):
    """The image with the background (mask 0) darkened to black: what the mask keeps."""
    weights = np.clip(to_numpy_map(mask), 0, 1)[..., None]
    return (image.astype(np.float32) * weights).astype(np.uint8)


def hstack_panels(panels, gap=2):
    """Panels of equal height side by side, separated by white gaps."""
    height = panels[0].shape[0]
    spacer = np.full((height, gap, 3), 255, np.uint8)
    row = []
    for i, panel in enumerate(panels):
        if panel.shape[0] != height:
            raise ValueError(f'panel {i} has height {panel.shape[0]}, expected {height}')
        row += [panel, spacer] if i < len(panels) - 1 else [panel]
    return np.concatenate(row, axis=1)


def vstack_rows(rows, gap=2):
    """Rows of equal width one above the other."""
    width = rows[0].shape[1]
    spacer = np.full((gap, width, 3), 255, np.uint8)
    out = []
    for i, row in enumerate(rows):
        out += [row, spacer] if i < len(rows) - 1 else [row]
    return np.concatenate(out, axis=0)
