"""One exception family for everything qexport reports to a user.

Library code raises these; only `qexport.cli` turns them into click exceptions.  Every message is
one line that names the file, tensor or option concerned and, where there is one, the fix.
"""


class QexportError(Exception):
    """Base class.  `exit_code` is what the CLI exits with."""

    exit_code = 1


class InputError(QexportError):
    """The input file cannot be used (missing, truncated, not a checkpoint, non-finite values...)."""


class UnsafeInputError(InputError):
    """The input would need arbitrary code execution to load (pickled objects, __reduce__ payloads)."""


class ArchMismatchError(InputError):
    """`--arch` was forced onto a checkpoint whose keys do not fit that architecture."""


class PlanError(QexportError):
    """The quantization plan cannot be carried out (scale not representable, int32 overflow...)."""


class UsageError(QexportError):
    """Options that contradict each other or are malformed (exit code 2, like click)."""

    exit_code = 2


class CannotHandle(QexportError):
    """A plugin cannot handle this model (e.g. the ONNX writer and the graph-less generic reader)."""


class DependencyMissing(QexportError):
    """A plugin needs a package that is not installed.  Kept apart from CannotHandle (imageio v3)."""


class OutputError(QexportError):
    """The output cannot be written (unwritable folder, path is a directory, disk full...)."""


class GraphError(QexportError):
    """The network graph cannot be built from a module: an unsupported op or module, or a forward
    that cannot be traced (README "The network graph").  The message names the node, the op, the
    source line and the supported ops."""


class ModelDefError(InputError):
    """`--model-def FILE.py:NAME` cannot be used: file missing, import error, no such name, missing
    arguments, not an nn.Module, or a state_dict that does not fit it."""
