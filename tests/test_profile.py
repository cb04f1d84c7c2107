"""ORT's per-node profile and its split into conv, width-scaled and fixed work."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from srprune.errors import SrpruneError
from srprune.measure.profile import kernel_events, op_name, profile_split, time_split


def _event(op: str, dur_us: float, channels: list[int], name: str = "n") -> dict:
    shapes = [{"float": [1, c, 8, 8]} for c in channels]
    return {"cat": "Node", "name": f"{name}_kernel_time", "dur": dur_us,
            "args": {"op_name": op, "input_type_shape": shapes[:1],
                     "output_type_shape": shapes[1:]}}


def test_time_split_sorts_kernels_by_kind_and_averages_over_runs():
    events = [_event("Conv", 3000, [16, 16]),
              _event("Conv", 1000, [16, 16], name="c_nchwc"),  # blocked conv
              _event("FusedConv", 2000, [3, 16]),
              _event("Add", 800, [16, 16]),
              _event("DepthToSpace", 600, [64, 16]),
              _event("DepthToSpace", 400, [12, 3]),  # to RGB: fixed
              _event("Resize", 500, [3, 3])]  # the bicubic skip of the input: fixed
    split = time_split(events, runs=2)
    assert split.conv == pytest.approx(3.0)
    assert split.width_scaled == pytest.approx(0.7)
    assert split.fixed == pytest.approx(0.45)
    assert split.total == pytest.approx(4.15)
    assert op_name(events[1]) == "NchwcConv" and op_name(events[0]) == "Conv"
    # a 1-channel image model: a 3-channel tensor is a feature tensor
    assert time_split(events, runs=2, image_channels=1).fixed == 0
    # no output shape in the event: its inputs decide
    bare = _event("Mul", 1000, [16])
    assert time_split([bare], runs=1).width_scaled == pytest.approx(1.0)
    with pytest.raises(SrpruneError, match="runs must be at least 1"):
        time_split(events, runs=0)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 16, 3, padding=1)
        self.body = nn.Conv2d(16, 16, 3, padding=1)
        self.up = nn.Conv2d(16, 12, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = nn.functional.interpolate(x, scale_factor=2, mode="bicubic")
        f = self.head(x)
        f = f + self.body(f) * torch.sigmoid(f.mean((2, 3), keepdim=True))
        return nn.functional.pixel_shuffle(self.up(f), 2) + skip


def test_a_real_profile_times_every_kind_and_leaves_no_file(tmp_path):
    path = tmp_path / "net.onnx"
    torch.onnx.export(_Net().eval(), (torch.rand(1, 3, 24, 24),), str(path), dynamo=False,
                      opset_version=17, input_names=["x"])
    events = kernel_events(path, (24, 24), threads=1, runs=2, warmup=1)
    ops = {op_name(e) for e in events}
    assert ops & {"Conv", "NchwcConv", "FusedConv"} and "Resize" in ops
    split = profile_split(path, (24, 24), runs=2)
    assert split.conv > 0 and split.width_scaled > 0 and split.fixed > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.onnx"]
