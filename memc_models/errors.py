"""The one error type the tools show to a person as a single line, and how to word OS errors and
long lists in it."""

from typing import Iterable

__all__ = ["UserError", "first_few", "first_line", "os_reason"]


class UserError(Exception):
    """A problem with the input, the output or the environment that a person can act on. The
    library raises it with a message naming the file (or option) and what was expected; the
    command-line programs (:func:`memc_models.cli.common.run`) print it as one line, without a
    traceback."""


def first_few(items: Iterable[str], shown: int, separator: str = ", ") -> str:
    """The first ``shown`` of ``items`` joined by ``separator``, and how many more there are
    (``a, b, c and 2 more``): what a message lists of a long list."""
    items = list(items)
    text = separator.join(items[:shown])
    return text if len(items) <= shown else f"{text} and {len(items) - shown} more"


def first_line(error: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none."""
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def os_reason(error: BaseException) -> str:
    """'No space left on device' rather than '[Errno 28] No space left on device: /x/y'."""
    return getattr(error, "strerror", None) or first_line(error)
