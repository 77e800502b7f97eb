"""Exceptions and warnings raised by :mod:`sis_attr`.

Every error subclasses :class:`SISError` *and* the matching built-in exception, so ``except ValueError``
keeps working for code that does not know about this package.
"""

from __future__ import annotations

__all__ = [
    "CLIError",
    "CheckpointNotFoundError",
    "DatasetNotFoundError",
    "ReportWriteError",
    "SISDeviceError",
    "SISError",
    "SISTypeError",
    "SISValueError",
    "SISWarning",
    "UninformativeBaselineWarning",
]


class SISError(Exception):
    """Root of every error raised by :mod:`sis_attr`."""


class SISValueError(SISError, ValueError):
    """An argument has the right type but an invalid value or shape."""


class SISTypeError(SISError, TypeError):
    """An argument has the wrong type."""


class SISDeviceError(SISError, RuntimeError):
    """Tensors (inputs, baselines, masks, model parameters) live on different devices."""


class SISWarning(UserWarning):
    """Root of every warning issued by :mod:`sis_attr`."""


class UninformativeBaselineWarning(SISWarning):
    """The model is already confident with every feature removed: the baseline itself carries evidence."""


class DatasetNotFoundError(SISError, FileNotFoundError):
    """A data file or directory does not exist.

    Subclasses both :class:`SISError` and :class:`FileNotFoundError`.
    """


class CheckpointNotFoundError(SISError, FileNotFoundError):
    """A model checkpoint (weights file) does not exist.

    Subclasses both :class:`SISError` and :class:`FileNotFoundError`.
    """


class ReportWriteError(SISError, OSError):
    """The report directory cannot be created or written.

    Subclasses both :class:`SISError` and :class:`OSError`.
    """


class CLIError(SISError, ValueError):
    """A command-line input is unusable (reported as a one-line message with exit status 2)."""
