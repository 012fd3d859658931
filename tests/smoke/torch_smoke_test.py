"""The torch resolve really is a working CPU PyTorch: a small CNN trains a step on real digits."""

from pathlib import Path

import torch
from torch import nn

from models.common.datasets import load_dataset, split_dataset


def test_torch_is_the_cpu_build():
    assert torch.__version__.endswith("+cpu")
    assert not torch.cuda.is_available()


def test_small_cnn_forward_and_backward_on_a_digits_batch():
    torch.manual_seed(0)
    split = split_dataset(load_dataset(Path("models/datasets/digits.npz")), seed=0)
    x = torch.from_numpy(split.train.features[:64]).unsqueeze(1)  # N, 1, 8, 8
    y = torch.from_numpy(split.train.labels[:64])
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    logits = model(x)
    assert logits.shape == (64, 10)
    loss = nn.functional.cross_entropy(logits, y)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    optimizer.step()
    with torch.no_grad():
        assert nn.functional.cross_entropy(model(x), y) < loss
