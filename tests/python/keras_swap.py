"""pytest plugin: Keras's own optimizer tests, run on adafactor.Adafactor.

Loaded with `-p keras_swap` by test_keras_suite.py. Before Keras's test files
are collected, every name under which they reach keras.optimizers.Adafactor
(the class, its module, and the registry `optimizers.get("adafactor")` reads)
is pointed at this package's class.
"""

import keras
import keras.src.optimizers as optimizers
import keras.src.optimizers.adafactor as keras_adafactor

from adafactor import Adafactor


def pytest_configure(config):
    config.addinivalue_line("markers", "requires_trainable_backend: Keras's mark")
    optimizers.Adafactor = Adafactor
    optimizers.ALL_OBJECTS_DICT["adafactor"] = Adafactor
    keras_adafactor.Adafactor = Adafactor
    keras.optimizers.Adafactor = Adafactor


def pytest_terminal_summary(terminalreporter):
    swapped = type(optimizers.get("adafactor"))
    terminalreporter.write_line(f"keras_swap: Adafactor is {swapped.__module__}")
