"""Elementwise means of same-shaped tensors, as AdaptCLIP combines its maps and scores."""
import torch


def harmonic_mean(tensors):
    """Elementwise ``n / sum(1 / x)`` of same-shaped tensors (no epsilon, as the original)."""
    stacked = torch.stack(list(tensors))
    return stacked.shape[0] / (1.0 / stacked).sum(dim=0)


def arithmetic_mean(tensors):
    return torch.stack(list(tensors)).mean(dim=0)
