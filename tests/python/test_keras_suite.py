"""Keras's own tests of Adafactor, of every optimizer, and of sparse
gradients pass on this package's class.

The three files are copied from the installed keras at test time (they are
Keras's, and stay out of this repository) and run in a fresh pytest with
the keras_swap plugin. Only test_correctness_with_golden is deselected: its
golden values follow Keras's capping of every learning rate at 1/sqrt(t),
which contradicts Keras's documentation of `relative_step`.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import keras.src.optimizers
import pytest

FILES = ("adafactor_test.py", "optimizer_test.py", "optimizer_sparse_test.py")
DESELECTED = "adafactor_test.py::AdafactorTest::test_correctness_with_golden"


@pytest.mark.slow  # a fresh pytest of Keras's files
@pytest.mark.skipif(
    keras.backend.backend() not in ("tensorflow", "jax"),
    reason="run on the backends with sparse gradients",
)
def test_keras_optimizer_tests_pass_on_our_class(tmp_path):
    source = Path(keras.src.optimizers.__file__).parent
    for name in FILES:
        shutil.copy(source / name, tmp_path / name)
    here = str(Path(__file__).parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([here, *sys.path]))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "keras_swap",
            "-q",
            "-rfE",
            "-p",
            "no:cacheprovider",
            "--deselect",
            DESELECTED,
            *FILES,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    out = done.stdout + done.stderr
    assert "is adafactor.optimizer" in out, out[-3000:]
    assert done.returncode == 0, out[-6000:]
    passed = int(re.search(r"(\d+) passed", out).group(1))
    assert passed >= 50, out[-2000:]
