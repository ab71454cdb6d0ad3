"""Turn a LOCAL timm ViT/DeiT checkpoint into a file the configs' ``load_from`` accepts.

    python tools/convert_timm_weights.py SRC DST [--target mmpretrain|timm]

--target mmpretrain (default): ViT-B/L and DeiT configs (mmpretrain VisionTransformer).
--target timm: AugReg configs (RelevanceGuidedTimmClassifier wrapping a timm model).
SRC is a timm ``state_dict`` file (.pth/.bin/.safetensors, optionally nested under 'model').
"""
import argparse

from robustvit_mm.models.timm_weights import convert_timm_checkpoint


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src')
    parser.add_argument('dst')
    parser.add_argument('--target', choices=('mmpretrain', 'timm'), default='mmpretrain')
    args = parser.parse_args()
    count = convert_timm_checkpoint(args.src, args.dst, args.target)
    print(f'wrote {args.dst}: {count} tensors for a {args.target} config')


if __name__ == '__main__':
    main()
