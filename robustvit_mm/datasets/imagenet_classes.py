"""ImageNet-1k class indices: index = rank of the wnid in sorted order (timm ships the 1000 synsets)."""
from functools import lru_cache

from timm.data import ImageNetInfo


@lru_cache(maxsize=1)
def _info():
    return ImageNetInfo()


@lru_cache(maxsize=1)
def imagenet_wnids():
    """The 1000 ImageNet-1k wnids in index order (sorted)."""
    return tuple(_info().label_names())


@lru_cache(maxsize=1)
def wnid_to_index():
    return {wnid: i for i, wnid in enumerate(imagenet_wnids())}


def imagenet_index(wnid, *, source='?'):
    """ImageNet-1k index of ``wnid``; a clear error naming ``source`` if it is not an ImageNet-1k class."""
    try:
        return wnid_to_index()[wnid]
    except KeyError:
        raise ValueError(f'{wnid!r} (from {source}) is not an ImageNet-1k wnid') from None


def imagenet_class_names():
    """Human-readable names in index order (the first synonym of each description)."""
    return tuple(_info().index_to_description(i).split(',')[0] for i in range(1000))
