"""Adafactor for Keras 3 with sublinear optimizer memory.

from adafactor import Adafactor
model.compile(optimizer=Adafactor(), loss=...)
"""

from adafactor.callbacks import StatisticsLogger
from adafactor.optimizer import Adafactor

__all__ = ["Adafactor", "StatisticsLogger"]
__version__ = "0.1.0"
