"""Where mmpretrain's stock scripts live: they ship inside the package (``mmpretrain/.mim/tools``)."""
import os
import runpy
import sys

import mmpretrain


def stock_tool_path(name):
    """Absolute path of a stock mmpretrain script, e.g. ``stock_tool_path('train.py')``."""
    path = os.path.join(os.path.dirname(mmpretrain.__file__), '.mim', 'tools', name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'mmpretrain {mmpretrain.__version__} ships no tools/{name} '
                                f'(looked at {path})')
    return path


def run_stock_tool(name):
    """Run a stock script in this process with the current ``sys.argv`` (as if called directly)."""
    path = stock_tool_path(name)
    sys.argv[0] = path
    runpy.run_path(path, run_name='__main__')
