"""CIFAR-10/100 python pickles -> BMP or PNG images (README "CIFAR-10/100 to images"; replaces seed 000's script).

`convert` reads a CIFAR folder or .tar.gz archive in place, loads its pickles through an allow-list
(nothing a pickle names is ever run), validates everything before writing the first file, then
writes each image atomically.  No torch import anywhere in this package.

Modules:
    unpickle    the restricted unpickler: allow-listed numpy globals mapped to inert stand-ins
    dataset     CIFAR-10/100 layouts, batch and meta validation, folder and tar sources
    images      BMP files built a chunk at a time in numpy; PNG through Pillow
    conversion  atomic per-image writing, `Result`, `convert`

Constants and private helpers stay in their modules: patch them there, not here.
"""

from .conversion import Result, convert, default_output
from .dataset import (
    CIFAR10,
    CIFAR10_NAMES,
    CIFAR100,
    KINDS,
    Batch,
    Dataset,
    Kind,
    find_default_source,
    folder_names,
    load_dataset,
    open_source,
    parse_batch,
    parse_meta,
)
from .images import bmp_header, encode_bmp_batch
from .unpickle import ALLOWED_GLOBALS, load_pickle

__all__ = [
    "ALLOWED_GLOBALS", "Batch", "CIFAR10", "CIFAR100", "CIFAR10_NAMES", "Dataset", "KINDS", "Kind", "Result",
    "bmp_header", "convert", "default_output", "encode_bmp_batch", "find_default_source", "folder_names",
    "load_dataset", "load_pickle", "open_source", "parse_batch", "parse_meta",
]
