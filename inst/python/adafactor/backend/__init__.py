"""What each backend does its own way, chosen once, when the package is
imported: the module named after `keras.backend.backend()` (`generic`, Keras's
ops alone, for any other). Every module here has the names of `generic`,
and the rest of the package reaches a backend through them alone."""

import importlib

import keras

_NAME = keras.backend.backend()
_MODULE = importlib.import_module(
    f"{__name__}.{_NAME if _NAME in ('tensorflow', 'jax', 'torch') else 'generic'}"
)
globals().update({name: getattr(_MODULE, name) for name in _MODULE.__all__})
