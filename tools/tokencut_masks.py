"""Generate TokenCut foreground masks for a folder of images (RobustViT's annotation-free variant).

    python tools/tokencut_masks.py IMG_ROOT OUT_ROOT --weights dino_vitbase16_pretrain.pth [--device cuda]

IMG_ROOT/<class>/<stem>.<JPEG|jpg|png|...>  ->  OUT_ROOT/<class>/<stem>.png

Masks use the ImageNet-S encoding (id = G*256 + R; foreground 1, background 0), so
ImageNetSMaskDataset reads them unchanged (configs/robustvit/vit-base-p16_robustvit-tokencut_imagenet.py).
"""
import argparse
import os.path as osp

from robustvit_mm.utils.cli import exit_with, run_tool, start_tool

start_tool()

from robustvit_mm.masks import generate_tokencut_masks  # noqa: E402

EPILOG = """\
method: DINO ViT-B/16 keys of the last block (heads concatenated, CLS dropped) -> normalised cut
(tau 0.2, eps 1e-5; foreground = side of the largest |eigenvector| entry, its connected component) ->
fast bilateral solver (sigma spatial 16, luma 16, chroma 8, lambda 256, confidence 0.999, <= 25 CG
iterations), threshold 0.5, fill holes, largest blob. When the refined mask is empty or has
IoU < 0.5 with the NCut mask, the NCut mask is written instead; the summary counts these fallbacks.

orientation: DINO sees each picture upright (its EXIF orientation applied); the mask is written on
the stored pixels, as ImageNet-S masks are. Symbolic links to folders are followed, each real folder
once (a link loop is skipped with a warning).

resume: masks already in OUT_ROOT are skipped (they are written atomically, so a killed run leaves
no partial file). Unreadable images are reported by path and the run goes on.

exit status: 0 when every image got a mask, 1 when any image failed (listed in the summary line),
2 on bad arguments or an unusable weights file.
"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='TokenCut foreground masks (DINO ViT-B/16 + normalised cut + bilateral solver) '
                    'for every image under IMG_ROOT, written under OUT_ROOT with the same tree.',
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('img_root', metavar='IMG_ROOT', help='folder of images, e.g. train/<wnid>/*.JPEG')
    parser.add_argument('out_root', metavar='OUT_ROOT', help='where the PNG masks go (tree mirrored)')
    parser.add_argument('--weights', required=True,
                        help='LOCAL DINO ViT-B/16 checkpoint (e.g. dino_vitbase16_pretrain.pth); '
                             'nothing is downloaded')
    parser.add_argument('--device', default='cpu', help='torch device (default: cpu), e.g. cuda')
    parser.add_argument('--save-panels', metavar='DIR', default=None,
                        help='also write image | mask panels (PNG, same tree) under DIR')
    parser.add_argument('--max-per-class', type=int, default=None, metavar='N',
                        help='only the first N images (sorted by name) of each folder')
    parser.add_argument('--tau', type=float, default=0.2, help='affinity threshold (default 0.2)')
    parser.add_argument('--eps', type=float, default=1e-5, help='affinity below tau (default 1e-5)')
    parser.add_argument('--no-refine', action='store_true',
                        help='write the NCut masks without the bilateral-solver refinement')
    parser.add_argument('--sigma-spatial', type=float, default=16)
    parser.add_argument('--sigma-luma', type=float, default=16)
    parser.add_argument('--sigma-chroma', type=float, default=8)
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    args = parser.parse_args(argv)
    if args.max_per_class is not None and args.max_per_class < 1:
        parser.error('--max-per-class must be >= 1')
    return args


def main(argv=None):
    args = parse_args(argv)
    if not osp.isdir(args.img_root):
        exit_with(f'IMG_ROOT {args.img_root} is not a folder')
    if osp.realpath(args.out_root) == osp.realpath(args.img_root):
        exit_with('OUT_ROOT must differ from IMG_ROOT')
    if not osp.isfile(args.weights):
        exit_with(f'--weights {args.weights} is not a file')
    try:
        # The model is built once, and only if some mask is still missing.
        summary = generate_tokencut_masks(
            args.img_root, args.out_root, args.weights, device=args.device,
            panels_dir=args.save_panels, max_per_class=args.max_per_class,
            refine=not args.no_refine, tau=args.tau, eps=args.eps, progress=not args.no_progress,
            sigma_spatial=args.sigma_spatial, sigma_luma=args.sigma_luma,
            sigma_chroma=args.sigma_chroma)
    except ValueError as exc:  # an unusable weights file (per-image errors are caught inside)
        exit_with(f'--weights: {exc}')
    print(summary.line())
    fallbacks = summary.fallback_low_iou + summary.fallback_empty
    if fallbacks:
        shown = ', '.join(fallbacks[:20]) + (f' ... ({len(fallbacks)} in all)' if len(fallbacks) > 20 else '')
        print(f'NCut mask kept (refinement disagreed or was empty) for: {shown}')
    if summary.written and summary.seconds:
        print(f'{summary.seconds / summary.written:.3f} s per image')
    return 1 if summary.failures else 0


if __name__ == '__main__':
    run_tool(main)
