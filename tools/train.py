"""`python tools/train.py CONFIG ...`: mmpretrain's STOCK tools/train.py, run from this repo.

Not a copy: the stock script is executed as is (all its arguments work, see `--help`). Configs load
the plugin through `custom_imports`. Multi-GPU: `torchrun --nproc_per_node=N tools/train.py CONFIG
--launcher pytorch`.
"""
from robustvit_mm.compat import silence_known_upstream_warnings
from robustvit_mm.stock_tools import run_stock_tool

if __name__ == '__main__':
    silence_known_upstream_warnings()
    run_stock_tool('train.py')
