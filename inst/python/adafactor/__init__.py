"""Adafactor for Keras 3 with sublinear optimizer memory.

from adafactor import Adafactor
model.compile(optimizer=Adafactor(), loss=...)
"""

from adafactor.optimizer import Adafactor

__all__ = ["Adafactor"]
__version__ = "0.1.0"
