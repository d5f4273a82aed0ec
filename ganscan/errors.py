"""One exception family for the library; the CLI turns each into a one-line message and exit code 1."""


class GanscanError(Exception):
    """A user-facing error: ``str(err)`` is one line; ``hint`` says what to do about it."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        msg = super().__str__()
        return f"{msg} ({self.hint})" if self.hint else msg


class CheckpointError(GanscanError):
    pass


class UnknownNameError(GanscanError):
    pass


class DataError(GanscanError):
    pass


def suggest(name: str, choices) -> str | None:
    """The closest of ``choices`` to ``name``, for 'did you mean' hints."""
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return close[0] if close else None
