"""Inference on a CPU in cache-sized calls: the chunk sizes, the calls made, and unchanged outputs."""

from __future__ import annotations

import torch
import torchvision

from texturebias.utils.device import cpu_micro_batch, forward_in_chunks, inference_forward


def test_micro_batch_sizes_follow_the_activation_budget() -> None:
    assert cpu_micro_batch(224, 224) == 2  # 64 ch x 224² x 4 B = 12.8 MB per image, 32 MB per call
    assert cpu_micro_batch(112, 112) == 10  # 3.2 MB per image
    assert cpu_micro_batch(32, 32) == 128
    assert cpu_micro_batch(2048, 2048) == 2  # never one: a batch of one runs another oneDNN algorithm


def test_chunked_forward_is_bit_identical_and_calls_in_chunks() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.rand(7, 3, 64, 64)
    calls: list[int] = []

    def counted(t: torch.Tensor) -> torch.Tensor:
        calls.append(t.shape[0])
        return model(t)

    with torch.inference_mode():
        whole = model(x)
        chunked = forward_in_chunks(counted, x, 3)
        assert calls == [3, 3, 2]  # the last image runs as a batch of two, then one output is kept
        assert torch.equal(chunked, whole)
        big = torch.rand(5, 3, 224, 224)
        assert torch.equal(inference_forward(model, big), model(big))
