"""User-facing errors. The CLI prints these as one line and exits non-zero, without a traceback."""


class UserError(Exception):
    """A mistake in the user's input (a file, an option, a name), described in one line."""


class DataError(UserError):
    """A data file or folder that is missing or not what it should be; the message names it."""
