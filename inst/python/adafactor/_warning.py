"""The package's own warnings, through one function: the R package puts a
function that calls R's warning() in its place, so that R code can catch
them. Call it as `_warning.warn(...)`, so that the replacement is found."""

import warnings


def warn(message):
    """Warn with `message` as a UserWarning."""
    warnings.warn(message, UserWarning, stacklevel=3)
