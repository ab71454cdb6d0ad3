"""`python tools/test.py CONFIG ...`: mmpretrain's STOCK tools/test.py, run from this repo.

Not a copy: the stock script is executed as is (all its arguments work, see `--help`). Configs load
the plugin through `custom_imports`. Multi-GPU: `torchrun --nproc_per_node=N tools/test.py CONFIG
--launcher pytorch`.
"""
from robustvit_mm.stock_tools import run_stock_tool
from robustvit_mm.utils.cli import start_tool

if __name__ == '__main__':
    start_tool()
    run_stock_tool('test.py')
