"""minigcnc.threads: the work it counts (a model's forward multiply-adds, convolutions at every position) and
the automatic rule's choice by work and by the machine's idle cores. The rule in ``fit`` is tested in
test_train.py (section 'BLAS threads'); its speed is measured by ``python -m minigcnc.bench --only threads``."""
import numpy as np
import pytest

from minigcnc import models, threads
from minigcnc.backend import tree_leaves


def test_fit_work_counts_a_convnets_kernels_at_every_output_position():
    model = models.convnet((1, 28, 28), 10, channels=(8, 16), hidden=(64,))  # figure_mnist's laptop convnet
    conv1 = 8 * 1 * 3 * 3 * 28 * 28  # 'same' 3x3 convs: every kernel at every position of the 28x28 map
    conv2 = 16 * 8 * 3 * 3 * 14 * 14  # after a 2x2 max-pool
    dense = 16 * 7 * 7 * 64 + 64 * 10  # the flattened 7x7x16 map into 64 units, then the head
    assert models.forward_macs(model) == {"dense": dense, "conv": conv1 + conv2}
    assert threads.fit_work(model, 64) == 64 * (conv1 + conv2 + dense)
    n_params = sum(int(np.size(a)) for a in tree_leaves(model.init(0)))
    assert threads.fit_work(model, 64) > 3 * 64 * n_params  # batch x parameters would undercount it


def test_fit_work_of_an_mlp_is_its_dense_multiply_adds_and_a_model_without_layers_counts_its_parameters():
    model = models.mlp([784, 256, 256, 64], 10)
    macs = 784 * 256 + 256 * 256 + 256 * 64 + 64 * 10
    assert models.forward_macs(model) == {"dense": macs, "conv": 0}
    assert threads.fit_work(model, 128) == 128 * macs
    assert threads.fit_work(object(), 8, [np.zeros((3, 4)), np.zeros(4)]) == 8 * 16


def test_a_strided_residual_convnet_counts_each_kernel_at_its_blocks_output_positions():
    model = models.resnet18((3, 8, 8), 10, width=1 / 16)  # channels 4, 8, 16, 32; maps 8, 4, 2, 1
    macs = models.forward_macs(model)
    stem = 4 * 3 * 9 * 8 * 8
    stage1 = 2 * 2 * (4 * 4 * 9) * 8 * 8  # two blocks of two 3x3 convs, 4 -> 4 channels on the 8x8 map
    stage2 = (8 * 4 * 9 + 8 * 8 * 9 + 8 * 4 + 2 * 8 * 8 * 9) * 4 * 4  # strided block (with its 1x1 shortcut), then one
    stage3 = (16 * 8 * 9 + 16 * 16 * 9 + 16 * 8 + 2 * 16 * 16 * 9) * 2 * 2
    stage4 = (32 * 16 * 9 + 32 * 32 * 9 + 32 * 16 + 2 * 32 * 32 * 9) * 1 * 1
    assert macs == {"dense": 32 * 10, "conv": stem + stage1 + stage2 + stage3 + stage4}


@pytest.mark.parametrize("work, idle, usable, expected", [
    (0, 2, 2, 1),  # an exact-Jacobian pass: always small
    (threads.SMALL_WORK - 1, 2, 2, 1),  # small: one thread even on an idle machine
    (threads.SMALL_WORK, 2, 2, 1),  # work for one thread only
    (2 * threads.SMALL_WORK, 2, 2, None),  # big, every core idle: BLAS left alone
    (9 * threads.SMALL_WORK, 1, 2, 1),  # big beside one busy process on 2 cores: one thread
    (10 * threads.SMALL_WORK, 3, 4, 3),  # big, 3 of 4 cores idle: 3 threads
    (2 * threads.SMALL_WORK, 16, 16, 2),  # 16 idle cores, work for 2: one thread per SMALL_WORK
    (20 * threads.SMALL_WORK, 16, 16, None),  # enough work for every idle core: BLAS left alone
])
def test_the_rule_by_work_and_idle_cores(monkeypatch, work, idle, usable, expected):
    monkeypatch.setattr(threads, "idle_cores", lambda window=threads.LOAD_WINDOW: idle)
    monkeypatch.setattr(threads, "usable_cores", lambda: usable)
    assert threads.auto_threads(work) == expected
    assert threads.auto_threads(work, on_host=False) is None


def test_the_laptop_models_count_as_big_and_a_test_sized_model_as_small():
    mlp = models.mlp([784, 256, 256, 64], 10)
    conv = models.convnet((1, 28, 28), 10, channels=(8, 16), hidden=(64,))
    assert threads.fit_work(mlp, 128) >= threads.SMALL_WORK and threads.fit_work(conv, 64) >= threads.SMALL_WORK
    assert threads.fit_work(models.mlp([64, 32, 16], 10), 32) < threads.SMALL_WORK


def test_idle_cores_is_between_one_and_the_usable_cores(monkeypatch):
    n = threads.idle_cores(window=0.01)
    assert 1 <= n <= threads.usable_cores()
    monkeypatch.setattr(threads, "_busy_cores_proc_stat", lambda window: None)  # no /proc/stat: the load average
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert threads.idle_cores() == threads.usable_cores()
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (100.0, 0.0, 0.0))
    assert threads.idle_cores() == 1
    cores = threads.usable_cores()
    monkeypatch.setattr(threads, "_busy_cores_proc_stat", lambda window: 0.5)  # a core half busy counts as busy
    assert threads.idle_cores() == max(1, cores - 1)
    monkeypatch.setattr(threads, "_busy_cores_proc_stat", lambda window: 0.1)  # background noise does not
    assert threads.idle_cores() == cores
