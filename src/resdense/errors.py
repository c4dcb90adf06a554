"""User-facing errors. The CLI prints these as one line and exits non-zero, without a traceback."""


class UserError(Exception):
    """A mistake in the user's input (a file, an option, a name), described in one line."""


class DataError(UserError):
    """A data file or folder that is missing or not what it should be; the message names it."""


class StorageError(UserError):
    """A folder that cannot take a file (full disk, read-only, no permission); the message names the folder
    and says that what was there is kept (every write is atomic)."""
