"""The TokenCut folder job: a mask for every image under a folder, written atomically, resumable.

Masks are written as PNGs in the ImageNet-S encoding (id = G*256 + R; foreground id 1, background 0),
so ``ImageNetSMaskDataset`` reads them unchanged. Orientation: DINO sees the picture upright (its EXIF
orientation applied, as a viewer shows it) and the mask is turned back onto the stored pixels before
it is written, the convention of ImageNet-S masks, which ``LoadForegroundMask`` turns with the image.
"""
import os
import os.path as osp
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import List, Tuple

import cv2
import numpy as np
from PIL import Image

from ..datasets.formats import (apply_exif_orientation, encode_imagenet_s_mask, exif_orientation,
                                is_image_file, undo_exif_orientation)
from ..utils import ProgressBar, atomic_write_bytes
from .tokencut import build_dino_vitb16, tokencut_mask

__all__ = ['load_image', 'write_mask_png', 'make_panel', 'list_images', 'GenerationSummary',
           'generate_tokencut_masks']


def load_image(path):
    """Open an image as RGB: ``(upright PIL image, EXIF orientation)``, 1 meaning as stored.

    The upright picture is what a viewer shows; ``undo_exif_orientation(mask, orientation)`` puts
    a mask computed on it back onto the stored pixels.
    """
    with open(path, 'rb') as f:
        data = f.read()
    orientation = exif_orientation(data)
    with Image.open(path) as img:
        stored = np.asarray(img.convert('RGB'))
    return Image.fromarray(apply_exif_orientation(stored, orientation)), orientation

# ----------------------------------------------------------------------------------------------
# Writing masks and panels
# ----------------------------------------------------------------------------------------------
def _write_rgb_png(path, rgb):
    ok, buf = cv2.imencode('.png', np.ascontiguousarray(np.asarray(rgb)[..., ::-1]))  # RGB -> BGR
    if not ok:
        raise RuntimeError(f'PNG encoding failed for {path}')
    atomic_write_bytes(path, buf.tobytes())


def write_mask_png(path, mask, fg_id=1):
    """Write ``mask`` as a 3-channel ImageNet-S PNG, atomically (temporary file, then rename)."""
    _write_rgb_png(path, encode_imagenet_s_mask(mask, fg_id))


def make_panel(img, mask, gap=4):
    """Side-by-side RGB panel: the image | the mask (white = foreground), with a grey gap."""
    rgb = np.asarray(img.convert('RGB') if isinstance(img, Image.Image) else img, dtype=np.uint8)
    m = np.repeat((np.asarray(mask, dtype=bool) * 255).astype(np.uint8)[..., None], 3, axis=2)
    sep = np.full((rgb.shape[0], gap, 3), 128, dtype=np.uint8)
    return np.concatenate([rgb, sep, m], axis=1)


# ----------------------------------------------------------------------------------------------
# Whole-folder generation
# ----------------------------------------------------------------------------------------------
def list_images(img_root, exclude=()):
    """Sorted relative paths of the images under ``img_root`` (any depth), skipping ``exclude`` dirs.

    Symbolic links to folders are followed, but each real folder is listed once: a link back to an
    ancestor (a loop) or a second link to a folder already listed is skipped with a warning naming it.
    """
    img_root = osp.abspath(img_root)
    excluded = {osp.realpath(p) for p in exclude if p}
    visited = {osp.realpath(img_root)}
    found = []
    for dirpath, dirnames, filenames in os.walk(img_root, followlinks=True):
        keep = []
        # Real folders before links of the same folder, so a folder is listed under its own name.
        for d in sorted(dirnames, key=lambda d: (osp.islink(osp.join(dirpath, d)), d)):
            real = osp.realpath(osp.join(dirpath, d))
            if d.startswith('.') or real in excluded:
                continue
            if real in visited:
                warnings.warn(f'{osp.join(dirpath, d)} leads to {real}, which is already listed '
                              '(a symbolic link loop or a second link to one folder); skipped')
                continue
            visited.add(real)
            keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            if is_image_file(name):
                found.append(osp.relpath(osp.join(dirpath, name), img_root))
    return found


@dataclass
class GenerationSummary:
    images: int = 0
    skipped: int = 0                 # masks that already existed (resume)
    written: int = 0
    fallback_low_iou: List[str] = field(default_factory=list)
    fallback_empty: List[str] = field(default_factory=list)
    failures: List[Tuple[str, str]] = field(default_factory=list)  # (image path, error)
    seconds: float = 0.0

    @property
    def fallbacks(self):
        return len(self.fallback_low_iou) + len(self.fallback_empty)

    def line(self):
        text = (f'images: {self.images}, masks written: {self.written}, '
                f'skipped (already there): {self.skipped}, '
                f'NCut fallbacks: {self.fallbacks} (IoU < 0.5: {len(self.fallback_low_iou)}, '
                f'empty refinement: {len(self.fallback_empty)}), failures: {len(self.failures)}')
        if self.failures:
            text += ' [' + '; '.join(f'{p}: {e}' for p, e in self.failures) + ']'
        return text


def generate_tokencut_masks(img_root, out_root, weights=None, *, model=None, device='cpu',
                            panels_dir=None, max_per_class=None, refine=True, tau=0.2, eps=1e-5,
                            progress=True, log_file=None, **solver_kwargs):
    """Write a TokenCut mask for every image under ``img_root``, mirroring its folder tree.

    ``img_root/<class>/<stem>.<ext>`` -> ``out_root/<class>/<stem>.png`` (ImageNet-S encoding).
    Masks already present (with their panel, when ``panels_dir`` is given) are skipped (resumable;
    writes are atomic). Unreadable images are reported (warning + summary) and do not stop the run. The model is built once (or passed as ``model``).

    Args:
        weights: local DINO ViT-B/16 checkpoint (ignored when ``model`` is given).
        panels_dir: also write image | mask panels there (same tree, PNG).
        max_per_class: only the first N images (sorted) of each folder.

    Returns:
        :class:`GenerationSummary`.
    """
    log = log_file or sys.stdout
    if not osp.isdir(img_root):
        raise FileNotFoundError(f'image folder not found: {img_root}')
    if osp.realpath(out_root) == osp.realpath(img_root):
        raise ValueError(f'the mask folder must differ from the image folder {img_root}')
    rel_paths = list_images(img_root, exclude=(out_root, panels_dir))
    if max_per_class is not None:
        kept, count = [], {}
        for rel in rel_paths:
            folder = osp.dirname(rel)
            if count.get(folder, 0) < max_per_class:
                count[folder] = count.get(folder, 0) + 1
                kept.append(rel)
        rel_paths = kept

    summary = GenerationSummary(images=len(rel_paths))
    todo, outputs = [], {}
    for rel in rel_paths:
        out_path = osp.join(out_root, osp.splitext(rel)[0] + '.png')
        if out_path in outputs:
            msg = f'same output {out_path} as {outputs[out_path]}'
            warnings.warn(f'{osp.join(img_root, rel)}: {msg}; skipped')
            summary.failures.append((osp.join(img_root, rel), msg))
            continue
        outputs[out_path] = rel
        panel = None if panels_dir is None else osp.join(panels_dir, osp.splitext(rel)[0] + '.png')
        if osp.isfile(out_path) and (panel is None or osp.isfile(panel)):
            summary.skipped += 1
        else:
            todo.append((rel, out_path, panel))
    if summary.skipped:
        log.write(f'{summary.skipped} of {len(rel_paths)} masks already exist: skipped\n')
    if not todo:
        return summary

    if model is None:
        if weights is None:
            raise ValueError('either weights (a DINO ViT-B/16 file) or model is needed')
        model = build_dino_vitb16(weights, device=device)
    model.eval()
    bar = ProgressBar(len(todo), unit='images', file=log) if progress else None
    start = time.perf_counter()
    for rel, out_path, panel in todo:
        img_path = osp.join(img_root, rel)
        try:
            img, orientation = load_image(img_path)
            result = tokencut_mask(model, img, device, tau=tau, eps=eps, refine=refine,
                                   **solver_kwargs)
            if panel is not None:     # first, so that a mask on disk means its panel is too
                _write_rgb_png(panel, make_panel(img, result.mask))
            write_mask_png(out_path, undo_exif_orientation(result.mask, orientation))
        except Exception as exc:  # noqa: BLE001 - one bad image must not stop a long run
            msg = f'{type(exc).__name__}: {exc}'
            warnings.warn(f'TokenCut failed on {img_path}: {msg}')
            summary.failures.append((img_path, msg))
        else:
            summary.written += 1
            if result.fallback == 'low_iou':
                summary.fallback_low_iou.append(img_path)
            elif result.fallback == 'empty_refinement':
                summary.fallback_empty.append(img_path)
        if bar is not None:
            bar.update()
    summary.seconds = time.perf_counter() - start
    return summary
