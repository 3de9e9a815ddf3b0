"""An Inception score for 8x8 digits: a small digits classifier stands in for the Inception network.

A pretrained Inception network cannot be downloaded here (and knows nothing of 8x8 digits), so
the score's feature extractor is a 64-128-10 MLP trained once per process, deterministically
(fixed seed, one thread, full batch), on the training split of scikit-learn's digits; it takes
about half a second. The score itself is torchmetrics' `InceptionScore` with that classifier as its
feature extractor: exp(E_x KL(p(y|x) || p(y))), between 1 (every image the same class) and 10.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import torch
from torch import nn
from torch.nn import functional as F

from mlp_digits import load_split

CLASSIFIER_SEED = 0
CLASSIFIER_STEPS = 150


@lru_cache(maxsize=1)
def classifier() -> nn.Module:
    """The digits classifier behind the score: pixels in [0, 1] (N x 64) to 10 logits, frozen, in eval mode."""
    x, y, _, _ = load_split()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same sums in the same order on every machine and in every worker
    try:
        generator = torch.Generator().manual_seed(CLASSIFIER_SEED)
        with torch.random.fork_rng(devices=[]):  # the layers' own init is replaced below
            model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
        with torch.no_grad():
            for layer in (model[0], model[2]):
                bound = layer.in_features**-0.5
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-bound, bound, generator=generator)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        with torch.enable_grad():  # the first caller may be scoring under no_grad
            for _ in range(CLASSIFIER_STEPS):
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(model(x), y).backward()
                optimizer.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def classifier_accuracy() -> float:
    """The classifier's accuracy on the validation split (digits it never trained on)."""
    _, _, x, y = load_split()
    with torch.no_grad():
        return (classifier()(x).argmax(1) == y).float().mean().item()


def inception_score(images: torch.Tensor) -> float:
    """The Inception score of images (N x 64, pixels in [0, 1]) under the digits classifier.

    torchmetrics' InceptionScore with one split; it shuffles with the global RNG before
    splitting, so that RNG is forked and seeded here: the score is the same for the same images
    and nothing else's random stream moves.
    """
    from torchmetrics.image.inception import InceptionScore  # imported on first use: it pulls in scipy.signal

    with warnings.catch_warnings(), torch.no_grad(), torch.random.fork_rng(devices=[]):
        # it warns that it buffers every feature, and that one split has no standard deviation
        warnings.filterwarnings("ignore", category=UserWarning)
        metric = InceptionScore(feature=classifier(), splits=1)
        torch.manual_seed(0)
        metric.update(images.reshape(len(images), 64).float())
        mean, _ = metric.compute()
    return float(mean)


def real_data_score() -> float:
    """The ceiling: the Inception score of the real validation digits."""
    return inception_score(load_split()[2])
