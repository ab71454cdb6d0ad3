"""Local checkpoint loading under torch >= 2.6.

torch 2.6 made ``torch.load(weights_only=True)`` the default; mmengine 0.10.7 checkpoints hold a
``HistoryBuffer`` and numpy objects, so every load path of the stock tools (``test.py CKPT``,
``--resume``, ``load_from``) fails with an UnpicklingError. Full unpickling is only safe for files
the user names, so we re-register mmengine's loader for LOCAL paths only; URLs keep torch's safe
default.
"""
import functools
import os.path as osp

import torch
from mmengine.runner import CheckpointLoader
from mmengine.runner import checkpoint as mmengine_checkpoint


def load_from_local_trusted(filename, map_location=None):
    """Load a local checkpoint file with full unpickling (the user named this file).

    Named ``load_from_*`` because mmengine logs the backend as the name after that prefix.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file {filename} can not be found.')
    return torch.load(filename, map_location=map_location, weights_only=False)


def enable_local_checkpoint_loading():
    """Make mmengine's local-file scheme (prefix '') use :func:`load_from_local_trusted`."""
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local_trusted, force=True)


def enable_safe_remote_loading():
    """mmengine loads http(s):// checkpoints through ``torch.hub.load_state_dict_from_url``, whose
    ``weights_only`` defaults to False: a downloaded file would be fully unpickled (it can run code).
    Force the safe loader for remote files; idempotent."""
    load_url = mmengine_checkpoint.load_url
    if getattr(load_url, 'keywords', {}).get('weights_only') is not True:
        mmengine_checkpoint.load_url = functools.partial(load_url, weights_only=True)
