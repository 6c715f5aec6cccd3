"""User-facing errors.

Every problem a user can cause (a malformed file, a config key that does not exist, a
committee whose widths do not fit) is raised as a :class:`DiverseDistillError` with one
sentence that names the file, line, key or width. The CLI prints that sentence and exits
with status 2 instead of showing a stack trace from deep inside torch or pandas.
"""


class DiverseDistillError(Exception):
    """Base class of every error caused by input the user controls."""


class DataError(DiverseDistillError):
    """A data file is missing or malformed."""


class ConfigError(DiverseDistillError):
    """A configuration key, value or combination is invalid."""


class ModelError(DiverseDistillError):
    """A model, module path or width does not fit what the method needs."""
