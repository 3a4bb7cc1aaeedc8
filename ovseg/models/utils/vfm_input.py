"""The input of a vision foundation model from a CLIP-normalised image, as ProxyCLIP and CorrCLIP make it.

Both originals un-normalise the CLIP input with OpenAI's 0..1 mean and std (``x * std + mean``,
``myutils.UnNormalize``), then apply torchvision's ``Normalize`` with the foundation model's mean and
std (ImageNet's for DINO, DINOv2, MAE and SAM). The CLIP input itself was normalised with mmseg's
rounded 0..255 values, so the round trip is not the exact 0..1 image; it is reproduced as it is.
Padded pixels (0 in CLIP space) become ``(clip_mean - mean) / std``.
"""
import torch

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _channels(values, like):
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)


def clip_to_vfm_input(x, vfm_mean=IMAGENET_MEAN, vfm_std=IMAGENET_STD, clip_mean=OPENAI_CLIP_MEAN,
                      clip_std=OPENAI_CLIP_STD):
    """(B, 3, H, W) CLIP-normalised images -> the foundation model's normalisation (module docstring).

    The operations are the originals' in their order (multiply, add, subtract, divide), so float32
    results agree bit for bit.
    """
    x = x * _channels(clip_std, x) + _channels(clip_mean, x)
    return (x - _channels(vfm_mean, x)) / _channels(vfm_std, x)
