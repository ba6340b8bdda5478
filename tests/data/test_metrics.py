"""The group-loss meter every host feeds: per-group token-weighted means, summed over ranks."""
from __future__ import annotations

import subprocess
import sys

import torch

from chatflow_plugin.data.metrics import GroupLossMeter, data_parallel_sum


def test_group_loss_meter_means_and_reduction():
    meter = GroupLossMeter(["en", "zh", "code"])
    meter.add(torch.tensor([0, 1, 0]), torch.tensor([2.0, 9.0, 4.0]), torch.tensor([1, 3, 1]))
    meter.add(torch.tensor([1]), torch.tensor([3.0]), torch.tensor([1]))
    doubled = []

    def fake_all_reduce(t):            # two identical ranks
        doubled.append(t.clone())
        t.mul_(2)

    losses, tokens = meter.reduce_and_reset(fake_all_reduce)
    assert losses == [3.0, 3.0, None] and tokens == [4, 8, 0] and len(doubled) == 1
    assert meter.reduce_and_reset() == ([None, None, None], [0, 0, 0])


def test_meter_accepts_float_token_counts_and_no_process_group_means_no_reduction():
    # the HF trainer passes the loss mask's row sums (floats); the TencentPretrain target, bincounts
    meter = GroupLossMeter(["a", "b"])
    meter.add(torch.tensor([1, 1]), torch.tensor([1.5, 4.5]), torch.tensor([2.0, 4.0]))
    assert meter.reduce_and_reset() == ([None, 1.0], [0, 6])
    assert data_parallel_sum() is None


def test_the_data_package_does_not_import_torch():
    code = ("import sys; import chatflow_plugin.data.metrics, chatflow_plugin.data.batches; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
