"""Exceptions for problems a user can cause and fix.

The CLI turns every :class:`TextureBiasError` into one clear message and a non-zero exit code, without a
traceback. Library callers can catch the subclasses they care about.
"""

from __future__ import annotations


class TextureBiasError(Exception):
    """Base class for errors caused by user input (bad path, corrupt file, wrong checkpoint, ...)."""


class UnknownModelError(TextureBiasError, KeyError):
    """A model name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DownloadError(TextureBiasError):
    """A file could not be downloaded (offline, wrong URL) or failed its hash check."""


class CheckpointError(TextureBiasError):
    """A checkpoint that cannot be loaded into the requested model."""


class ImageReadError(TextureBiasError):
    """An image file that cannot be read or decoded."""


class DataError(TextureBiasError):
    """A dataset folder or data file that is missing, incomplete or malformed."""


class UsageError(TextureBiasError):
    """Flags that contradict each other or are missing: the command line itself is wrong (exit code 2)."""


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message for a one-line report, or its type name when the message is empty.

    ``torch.load`` on a zero-byte file raises with an empty message; ``str(exc).splitlines()[0]`` would then
    turn a user error into an ``IndexError`` traceback.
    """
    return next(iter(str(exc).splitlines()), "").strip() or type(exc).__name__
