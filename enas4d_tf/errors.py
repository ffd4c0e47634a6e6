"""Every error a user can cause, in one hierarchy.

Each is a `ValueError` (so `except ValueError` keeps working) whose message is one line that
names the problem. The command lines in `tools/` catch `Enas4dError` and print that line; any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class Enas4dError(ValueError):
    """Base of every user-facing error of the package; the message is one line."""


class SpaceError(Enas4dError):
    """A malformed architecture or search space; the message names the bad gene or field."""


class DataError(Enas4dError):
    """A dataset that cannot be read: unknown name, missing files, bad split."""


class WorkdirError(Enas4dError):
    """A training workdir that cannot be used: missing, foreign or corrupt."""


class TrainError(Enas4dError):
    """A training configuration that cannot run."""


class SearchError(Enas4dError):
    """A search configuration or search state that cannot be used."""


class ExportError(Enas4dError):
    """An architecture file or export request that cannot be exported."""


class ConversionError(ExportError):
    """A stage graph that failed to convert to TFLite builtin ops."""


class ExportDirError(ExportError):
    """An export folder that cannot be run: missing files, bad manifest, wrong version."""


class LatencyError(Enas4dError):
    """A latency table that cannot be used: missing, corrupt, of another target or space, or
    lacking a key an architecture needs (the message names it)."""
