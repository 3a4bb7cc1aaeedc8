"""Tiny SAM / SAM 2 / SAM 3 models for tests: varied random weights and the SAM 3 segmentor config."""
import math

import torch

# Input sides of the tiny models: small enough for milliseconds per call on a CPU.
TINY_SAM2_SIZE = 256   # multiple of 32: 64 x 64 patch grid, 16 x 16 image embedding, 64 x 64 mask logits
TINY_SAM3_SIZE = 112   # multiple of 14: 8 x 8 ViT grid, 32 x 32 mask and semantic logits


def spread_weights(module, seed=0):
    """Weights with std 1/sqrt(fan_in) (norms near 1), in place: random SAMs then give varied masks and
    scores, unlike the default initialisation (masks and IoU all near 0.5), so comparisons exercise
    many different decisions."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p[0].numel()))
            elif 'norm' in name:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))
    return module


def seeded_build(build, seed=0):
    """``build()`` with torch's global generator seeded (and restored after): transformers models draw
    some buffers at construction (e.g. SAM 2's random-Fourier positional matrix), which
    :func:`spread_weights` does not touch, so the model is the same whatever ran before."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build()


def tiny_sam2(seed=0):
    """A tiny random SAM2Predictor (transformers Sam2Model) with spread weights, the same in every run."""
    from ovseg.models.proposals import SAM2Predictor
    build = lambda: SAM2Predictor(arch='tiny', image_size=TINY_SAM2_SIZE)  # noqa: E731
    return spread_weights(seeded_build(build, seed), seed)


def tiny_sam3(seed=0):
    """A tiny random SAM3TextPrompter (transformers Sam3Model) with spread weights, the same in every run."""
    from ovseg.models.proposals import SAM3TextPrompter
    build = lambda: SAM3TextPrompter(arch='tiny', image_size=TINY_SAM3_SIZE)  # noqa: E731
    return spread_weights(seeded_build(build, seed), seed)


def tiny_sam3_cfg(vocabulary=('cat', 'dog', 'grass'), **overrides):
    """Config of a ``SAM3Segmentor`` over the tiny random SAM 3 (RGB preprocessor, no normalisation)."""
    cfg = dict(type='SAM3Segmentor', vocabulary=list(vocabulary),
               sam3=dict(type='SAM3TextPrompter', arch='tiny', image_size=TINY_SAM3_SIZE),
               data_preprocessor=dict(type='SegDataPreProcessor', bgr_to_rgb=True, pad_val=0,
                                      seg_pad_val=255))
    cfg.update(overrides)
    return cfg
