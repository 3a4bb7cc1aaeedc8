"""Frozen teachers that supervise CLIP-DINOiser training: DINO correlations and FOUND saliency.

Both are timm ViTs (``dynamic_img_size=True``, no pretrained download) that load user-supplied weights with
``torch.load(weights_only=True)`` and read the query/key/value projection of their **last** block:

* :class:`DINOCorrelationTeacher` (DINO ViT-B/16): cosine correlations of the last block's value features,
  binarised at γ = 0.2, supervise ``obj_proj``'s correlations.
* :class:`FOUNDSaliencyTeacher` (FOUND, Siméoni et al. 2023): a DINO ViT-S/8 whose last-block key features
  go through a 1x1 convolution; sigmoid > 0.5 is the foreground that supervises ``bkg_decoder``.

Inputs are the segmentor's images, normalised with CLIP's mean/std (0-255 units, as the data preprocessor
does); DINO was trained on ImageNet-normalised images, so each teacher converts them first.
The official DINO checkpoints use timm's key names (``cls_token``, ``pos_embed``, ``patch_embed.proj.*``,
``blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.*``, ``norm.*``). Positional embeddings are
resampled by timm (bicubic to the exact grid); DINO's own code interpolates with a scale factor of
(grid + 0.1) / 14, which samples at slightly different positions: a negligible difference on binarised
targets.
"""
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from ovseg.models.backbones.vit_walker import walk
from ovseg.registry import MODELS
from ovseg.utils.checkpoint import load_checkpoint_file

# OpenAI CLIP normalisation in 0-255 units, as the segmentors' data preprocessor applies it.
CLIP_MEAN_255 = (122.7709383, 116.7460125, 104.09373615)
CLIP_STD_255 = (68.5005327, 66.6321579, 70.32316305)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DINO_B16_URL = 'https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth'
DINO_S8_URL = ('https://dl.fbaipublicfiles.com/dino/dino_deitsmall8_300ep_pretrain/'
               'dino_deitsmall8_300ep_pretrain.pth')
FOUND_DECODER_URL = 'https://github.com/valeoai/FOUND/raw/main/data/weights/decoder_weights.pt'
_QKV_INDEX = {'q': 0, 'k': 1, 'v': 2}


def build_teacher_vit(arch, vit_cfg=None):
    """A timm ViT without classifier, accepting any input size (positional embeddings resampled).

    Args:
        arch (str): timm architecture, e.g. 'vit_base_patch16_224' or 'vit_small_patch8_224'.
        vit_cfg (dict, optional): overrides of the architecture (``embed_dim``, ``depth``, ``num_heads``,
            ``patch_size``, ``img_size``), e.g. for tiny test models.
    """
    import timm  # lazily: only training needs the teachers
    return timm.create_model(arch, pretrained=False, num_classes=0, dynamic_img_size=True, **(vit_cfg or {}))


def _listed(keys, limit=12):
    keys = sorted(keys)
    return f'{keys[:limit]}{" ..." if len(keys) > limit else ""} ({len(keys)})'


def check_and_load(module, state, path, what):
    """Load ``state`` into ``module`` strictly; raise KeyError naming every mismatching key.

    Args:
        module (nn.Module): destination.
        state (dict[str, Tensor]): source weights.
        path (str): file the weights came from (for the message).
        what (str): what the file should be (for the message).
    """
    own = module.state_dict()
    missing, unexpected = set(own) - set(state), set(state) - set(own)
    shapes = [f'{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}' for k in sorted(set(own) & set(state))
              if state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        raise KeyError(f'{path} is not {what}: missing keys {_listed(missing)}; unexpected keys '
                       f'{_listed(unexpected)}; shape mismatches {shapes[:6]}.')
    module.load_state_dict(state)


def _require_file(path, what, config_key, url):
    if path is None or not os.path.isfile(str(path)):
        state = 'is not set' if path is None else f'= {path!r} does not exist'
        raise FileNotFoundError(f'{config_key} {state}: the teacher needs {what} ({url}). Download it and '
                                f'set the path in the config or with --cfg-options {config_key}=PATH.')
    return str(path)


def load_vit_weights(vit, path, what):
    """Read a DINO ViT checkpoint (weights_only) into a timm ViT.

    Accepts the released backbone files (plain state dicts) and DINO's full training checkpoints
    (``teacher`` / ``student`` with ``module.`` and ``backbone.`` prefixes); the DINO projection head
    (``head.*``) is not part of the backbone and is dropped.

    Raises:
        KeyError: the file does not hold the architecture's weights (the keys are named).
    """
    state = load_checkpoint_file(path)
    for key in ('teacher', 'state_dict', 'model'):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise KeyError(f'{path} does not hold a state dict (found {type(state).__name__}).')
    clean = {}
    for key, value in state.items():
        for prefix in ('module.', 'backbone.'):
            key = key[len(prefix):] if key.startswith(prefix) else key
        if not key.startswith('head.'):
            clean[key] = value
    check_and_load(vit, clean, path, what)


class FrozenViTTeacher(nn.Module):
    """A frozen timm ViT exposing the last block's q/k/v projections as (B, C, h, w) maps.

    Args:
        arch (str): timm architecture.
        checkpoint (str): DINO weights of that architecture (required unless ``allow_random``).
        vit_cfg (dict, optional): architecture overrides (tiny test models).
        input_mean (Sequence[float]): mean the inputs were normalised with, 0-255 units (CLIP's).
        input_std (Sequence[float]): std the inputs were normalised with, 0-255 units (CLIP's).
        allow_random (bool): keep random weights when ``checkpoint`` is None (tests only). Default False.
        config_key (str): config path of ``checkpoint``, named in errors.
        url (str): where the official weights are, named in errors.
    """

    def __init__(self, arch, checkpoint=None, vit_cfg=None, input_mean=CLIP_MEAN_255, input_std=CLIP_STD_255,
                 allow_random=False, config_key='checkpoint', url=''):
        super().__init__()
        self.vit = build_teacher_vit(arch, vit_cfg)
        if checkpoint is not None or not allow_random:
            path = _require_file(checkpoint, f'the DINO weights of {arch}', config_key, url)
            load_vit_weights(self.vit, path, f'a DINO {arch} checkpoint')
        # x_imagenet = x_clip * scale + shift, with x_clip = (pixel - input_mean) / input_std in 0-255 units.
        in_mean, in_std = torch.tensor(input_mean), torch.tensor(input_std)
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        self.register_buffer('scale', (in_std / 255.0 / std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('shift', ((in_mean / 255.0 - mean) / std).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False).eval()

    @property
    def patch_size(self):
        return int(self.vit.patch_embed.patch_size[0])

    def train(self, mode=True):
        """Teachers stay in eval mode."""
        return super().train(False)

    def to_imagenet(self, inputs):
        """(B, 3, H, W) CLIP-normalised -> ImageNet-normalised, zero-padded to a multiple of the patch."""
        x = inputs.float() * self.scale + self.shift
        pad_h, pad_w = (-x.shape[-2]) % self.patch_size, (-x.shape[-1]) % self.patch_size
        return F.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x  # DINO pads the normalised image

    @torch.no_grad()
    def last_qkv(self, inputs, which):
        """(B, 3, H, W) CLIP-normalised images -> (B, C, H/p, W/p) last-block 'q', 'k' or 'v' features.

        Heads are concatenated in head order (the layout of timm's and DINO's fused qkv projection); the
        prefix tokens are dropped. Read through the ViT walker's tap on the last block's projections
        (``blocks.-1.q|k|v``), the output of ``blocks[-1].attn.qkv`` that DINO and FOUND read.
        """
        x = self.to_imagenet(inputs)
        result = walk(self.vit, x, taps=(f'blocks.-1.{which}',))
        part = result.taps[f'blocks.-1.{which}'][:, self.vit.num_prefix_tokens:]
        return part.transpose(1, 2).reshape(x.shape[0], part.shape[-1], *result.grid).float()


@MODELS.register_module()
class DINOCorrelationTeacher(FrozenViTTeacher):
    """DINO ViT-B/16 value-feature correlations, the target of CLIP-DINOiser's ``obj_proj``.

    Args:
        checkpoint (str): the official ``dino_vitbase16_pretrain.pth`` (or a DINO full checkpoint).
        arch (str): timm architecture. Default 'vit_base_patch16_224'.
        feats (str): 'v' (default, as CLIP-DINOiser), 'k' or 'q' of the last block.
        gamma (float): a pair of locations is a positive when its correlation is >= gamma. Default 0.2.
        **kwargs: ``vit_cfg``, ``input_mean``, ``input_std``, ``allow_random`` of :class:`FrozenViTTeacher`.
    """

    def __init__(self, checkpoint=None, arch='vit_base_patch16_224', feats='v', gamma=0.2, **kwargs):
        kwargs.setdefault('config_key', 'model.refiner.teacher.checkpoint')
        kwargs.setdefault('url', DINO_B16_URL)
        super().__init__(arch, checkpoint, **kwargs)
        if feats not in _QKV_INDEX:
            raise ValueError(f"feats must be 'q', 'k' or 'v', got {feats!r}")
        self.feats = feats
        self.gamma = float(gamma)

    @torch.no_grad()
    def correlations(self, inputs, grid_size):
        """(B, 3, H, W) CLIP-normalised images -> (B, hw, hw) cosine correlations on the (h, w) grid.

        When the DINO grid differs from ``grid_size`` (another patch size), the features are resized
        bilinearly before normalisation; CLIP-DINOiser's ViT-B/16 pair needs no resize.
        """
        feats = self.last_qkv(inputs, self.feats)
        if tuple(feats.shape[-2:]) != tuple(grid_size):
            feats = F.interpolate(feats, size=tuple(grid_size), mode='bilinear', align_corners=False)
        feats = F.normalize(feats.flatten(2), dim=1)
        return torch.bmm(feats.transpose(1, 2), feats)

    @torch.no_grad()
    def forward(self, inputs, grid_size):
        """(B, 3, H, W) -> (B, hw, hw) float targets: 1 where the correlation is >= gamma, else 0."""
        return (self.correlations(inputs, grid_size) >= self.gamma).float()


@MODELS.register_module()
class FOUNDSaliencyTeacher(FrozenViTTeacher):
    """FOUND saliency: a 1x1 convolution on a DINO ViT-S/8's last-block key features.

    Args:
        checkpoint (str): DINO ViT-S/8 weights (FOUND uses ``dino_deitsmall8_300ep_pretrain.pth``).
        decoder_checkpoint (str): FOUND's ``decoder_weights.pt`` (``{'decoder': {'weight', 'bias'}}``;
            a plain ``{'weight', 'bias'}`` dict works too).
        arch (str): timm architecture. Default 'vit_small_patch8_224'.
        feats (str): features the decoder reads: 'k' (default, as FOUND), 'q' or 'v'.
        thresh (float): foreground where sigmoid(decoder) > thresh. Default 0.5.
        allow_random (bool): random ViT and decoder when their files are None (tests only).
        **kwargs: ``vit_cfg``, ``input_mean``, ``input_std`` of :class:`FrozenViTTeacher`.
    """

    def __init__(self, checkpoint=None, decoder_checkpoint=None, arch='vit_small_patch8_224', feats='k',
                 thresh=0.5, allow_random=False, **kwargs):
        kwargs.setdefault('config_key', 'model.refiner.saliency_teacher.checkpoint')
        kwargs.setdefault('url', DINO_S8_URL)
        super().__init__(arch, checkpoint, allow_random=allow_random, **kwargs)
        if feats not in _QKV_INDEX:
            raise ValueError(f"feats must be 'q', 'k' or 'v', got {feats!r}")
        self.feats = feats
        self.thresh = float(thresh)
        self.decoder = nn.Conv2d(self.vit.embed_dim, 1, 1)
        if decoder_checkpoint is not None or not allow_random:
            path = _require_file(decoder_checkpoint, "FOUND's decoder_weights.pt",
                                 'model.refiner.saliency_teacher.decoder_checkpoint', FOUND_DECODER_URL)
            self.load_decoder(path)
        self.requires_grad_(False).eval()

    def load_decoder(self, path):
        """Load FOUND's 1x1 decoder (weights_only); KeyError names the keys when the file is not one."""
        state = load_checkpoint_file(path)
        if isinstance(state, dict) and isinstance(state.get('decoder'), dict):
            state = state['decoder']
        if isinstance(state, dict):
            state = {k[len('decoder.'):] if k.startswith('decoder.') else k: v for k, v in state.items()}
        else:
            raise KeyError(f'{path} does not hold a state dict (found {type(state).__name__}).')
        check_and_load(self.decoder, state, path, "FOUND's decoder_weights.pt")

    @torch.no_grad()
    def saliency(self, inputs, grid_size):
        """(B, 3, H, W) CLIP-normalised images -> (B, 1, h, w) foreground probability on the (h, w) grid.

        The sigmoid is taken on FOUND's grid and then resized bilinearly (no antialiasing), as
        CLIP-DINOiser's training code does with torchvision 0.13.
        """
        probs = self.decoder(self.last_qkv(inputs, self.feats)).sigmoid()
        if tuple(probs.shape[-2:]) != tuple(grid_size):
            probs = F.interpolate(probs, size=tuple(grid_size), mode='bilinear', align_corners=False)
        return probs

    @torch.no_grad()
    def forward(self, inputs, grid_size):
        """(B, 3, H, W) -> (B, 1, h, w) float targets: 1 for foreground (saliency > thresh), else 0."""
        return (self.saliency(inputs, grid_size) > self.thresh).float()
