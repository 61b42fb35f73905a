"""Distributed training on Keras's engines matches single-device training.

Each case runs distributed_worker.py in a fresh process, because devices
must be configured before the backend starts."""

import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from adafactor.statistics import STATISTICS

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

WORKER = Path(__file__).with_name("distributed_worker.py")


@functools.cache
def run(mode):
    done = subprocess.run(
        [sys.executable, str(WORKER), mode],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # StatisticsLogger's values equal those of one device.
    assert result["logged"] == sorted(STATISTICS)
    assert result["logged_diff"] <= 1e-5
    return result


@pytest.mark.tensorflow_workers
def test_tf_mirrored_strategy_on_two_cpus():
    result = run("mirrored")
    assert result["replicas"] == 2
    assert result["max_diff"] <= 1e-5


def test_jax_data_parallel_on_four_devices():
    result = run("data_parallel")
    assert result["devices"] == 4
    assert result["max_diff"] <= 1e-5
    for axes, spec in result["layouts"].values():
        assert axes == [None] and spec == [None]


@pytest.mark.parametrize("layer, units", [("dense_in", 16), ("dense_out", 4)])
def test_jax_model_parallel_shards_the_statistics(layer, units):
    result = run("model_parallel")
    assert result["max_diff"] <= 1e-5
    layouts = {name.split("_", 2)[-1]: v for name, v in result["layouts"].items()}
    # The kernel is sharded (None, "model"): r drops the sharded last axis and
    # is replicated; c keeps it and is sharded like the kernel's columns.
    assert layouts[f"{layer}_kernel_r"] == [[None], [None]]
    assert layouts[f"{layer}_kernel_c"] == [["model"], ["model"]]
    assert layouts[f"{layer}_bias_v"][0] == [None]
