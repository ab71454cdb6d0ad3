"""Turn a LOCAL timm checkpoint into a file the configs' ``load_from`` accepts.

    python tools/convert_timm_weights.py SRC DST [--target mmpretrain|timm] [--img-size 224]
        [--num-heads N] [--rope-ref-grid 16]

--target mmpretrain (default), for the mmpretrain configs; the family is read from the names:
  ViT / DeiT (VisionTransformer), DeiT3 and DINOv2 (VisionTransformer with layer scale),
  BEiT / BEiT-v2 (BEiTViT), EVA-02 (ViTEVA02).
--target timm: configs that wrap a timm model (RelevanceGuidedTimmClassifier, e.g. AugReg).
--img-size: the config's input size; ``pos_embed`` is resampled for it as timm does (and EVA-02's
  RoPE tables are made for it), e.g. DINOv2's 518-px or EVA-02's 448-px weights for a 224-px
  config. Without it the checkpoint's own size is kept.
--num-heads / --rope-ref-grid: EVA-02 only (defaults: embed_dims // 64 heads, grid 16).
SRC is a timm ``state_dict`` file (.pth/.bin/.safetensors, optionally nested under 'model') of a
ViT-family model; other architectures and files converted already are refused, naming the cause.
DST is written atomically and must not be SRC.
"""
import argparse

from robustvit_mm.models.timm_weights import convert_timm_checkpoint
from robustvit_mm.utils.cli import run_tool, start_tool


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src')
    parser.add_argument('dst')
    parser.add_argument('--target', choices=('mmpretrain', 'timm'), default='mmpretrain')
    parser.add_argument('--img-size', type=int, default=None)
    parser.add_argument('--num-heads', type=int, default=None)
    parser.add_argument('--rope-ref-grid', type=int, default=16)
    args = parser.parse_args(argv)
    info = convert_timm_checkpoint(args.src, args.dst, args.target, img_size=args.img_size,
                                   num_heads=args.num_heads, rope_ref_grid=args.rope_ref_grid)
    print(f'wrote {args.dst}: {info["tensors"]} tensors of a {info["family"]} checkpoint for a '
          f'{args.target} config')


if __name__ == '__main__':
    start_tool()
    run_tool(main)
