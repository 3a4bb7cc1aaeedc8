"""Segment Anything (SAM) as an ovseg module: one image embedding, many batched prompt queries.

Built from ``segment_anything``'s own components (``ImageEncoderViT``, ``PromptEncoder``, ``MaskDecoder``,
``TwoWayTransformer``); weights load with ``torch.load(weights_only=True)``. Pre- and post-processing are
those of ``segment_anything.SamPredictor`` (PIL resize of the long side, pixel normalisation, zero padding,
bilinear upsampling of the 256x256 logits), so masks equal the package's for the same prompts.
"""
from dataclasses import dataclass
from functools import partial
from typing import Tuple

import numpy as np
import torch
import torch.nn as nn
from mmengine.logging import print_log

from ovseg.models.proposals.prompt_predictor import PromptPredictor, check_prompts  # noqa: F401 (re-export)
from ovseg.models.proposals.shared_decoder import decode_masks, decode_tokens, output_slice
from ovseg.registry import MODELS
from ovseg.utils.checkpoint import load_state_dict_file

# Image-encoder sizes of the released models (segment_anything/build_sam.py); 'tiny' is for tests only
# (the parity fixtures use it with the standard 256-d prompt encoder and mask decoder).
SAM_ARCHS = {
    'vit_b': dict(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11)),
    'vit_l': dict(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23)),
    'vit_h': dict(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31)),
    'tiny': dict(embed_dim=64, depth=2, num_heads=2, global_attn_indexes=(1,)),
}
PATCH_SIZE = 16
PROMPT_DIM = 256


def build_sam_model(arch='vit_b', image_size=1024, prompt_dim=PROMPT_DIM, **overrides):
    """Build a ``segment_anything.modeling.Sam`` with random weights.

    Args:
        arch (str): 'vit_b', 'vit_l', 'vit_h' or 'tiny' (64-d, 2 blocks, 2 heads). Default 'vit_b'.
        image_size (int): side of the square encoder input (1024 for released weights; a multiple of 16).
        prompt_dim (int): width of the image embedding (the neck's output), the prompt encoder and the
            mask decoder, as ``segment_anything``'s ``prompt_embed_dim``. Default 256 (released models;
            smaller values are for tiny test models).
        **overrides: image-encoder settings replacing the arch's (embed_dim, depth, num_heads,
            global_attn_indexes, window_size).

    Returns:
        Sam: in eval mode.
    """
    from segment_anything.modeling import (ImageEncoderViT, MaskDecoder, PromptEncoder, Sam,
                                           TwoWayTransformer)
    if arch not in SAM_ARCHS:
        raise ValueError(f'Unknown SAM arch {arch!r}; choose from {sorted(SAM_ARCHS)}.')
    if image_size % PATCH_SIZE:
        raise ValueError(f'image_size must be a multiple of {PATCH_SIZE}, got {image_size}.')
    enc = dict(SAM_ARCHS[arch], window_size=14)
    enc.update(overrides)
    grid = image_size // PATCH_SIZE
    encoder = ImageEncoderViT(
        img_size=image_size, patch_size=PATCH_SIZE, embed_dim=enc['embed_dim'], depth=enc['depth'],
        num_heads=enc['num_heads'], mlp_ratio=4, out_chans=prompt_dim, qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6), use_rel_pos=True,
        global_attn_indexes=tuple(enc['global_attn_indexes']), window_size=enc['window_size'])
    prompt_encoder = PromptEncoder(embed_dim=prompt_dim, image_embedding_size=(grid, grid),
                                   input_image_size=(image_size, image_size), mask_in_chans=16)
    decoder = MaskDecoder(
        num_multimask_outputs=3, transformer_dim=prompt_dim, iou_head_depth=3, iou_head_hidden_dim=256,
        transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_dim, mlp_dim=2048, num_heads=8))
    return Sam(image_encoder=encoder, prompt_encoder=prompt_encoder, mask_decoder=decoder,
               pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375]).eval()


@dataclass
class SAMImage:
    """SAM's embedding of one image, reused by every prompt batch on that image.

    Attributes:
        embedding (Tensor): (1, 256, g, g) image embedding (g = image_size / 16; 64 for 1024).
        input_size (tuple[int, int]): (h, w) of the resized image inside the padded square input.
        original_size (tuple[int, int]): (H, W) of the image given to :meth:`SAMPredictor.embed_image`.
    """

    embedding: torch.Tensor
    input_size: Tuple[int, int]
    original_size: Tuple[int, int]


@dataclass
class SAMMasks:
    """Mask-decoder outputs for a batch of prompts.

    Attributes:
        low_res_logits (Tensor): (N, M, 4g, 4g) logits (256x256 at image_size 1024); M = 3 for multimask
            output, else 1.
        iou (Tensor): (N, M) predicted IoU of each mask.
    """

    low_res_logits: torch.Tensor
    iou: torch.Tensor


@MODELS.register_module()
class SAMPredictor(PromptPredictor):
    """Frozen SAM with an explicit embedding state and batched prompt decoding.

    Call graph::

        embed_image(rgb uint8)            resize long side ─ normalise ─ pad ─ image encoder (once)
        predict(image, points, boxes, masks, multimask_output, batch_size)
          └─ check_prompts ─ to_input_frame   pixel prompts checked, then mapped to SAM's input frame
          └─ encode_masks                 dense embeddings of mask prompts (once for a shared mask)
          └─ decode                       prompt encoder ─ mask decoder, ``batch_size`` prompts at a time;
                                          one copy of the image tokens when the prompts share a dense
                                          embedding (shared_decoder: same outputs, less work)
        decode_tokens / decode_masks      the two halves of decode, to upscale only chosen prompts
        grid_masks(image, coords)         automatic-grid points: IoU of all masks, logits of the kept ones
        upsample(low_res_logits, image)   256x256 logits -> (H, W) logits (SamPredictor's postprocess)

    ``predict`` comes from :class:`~ovseg.models.proposals.prompt_predictor.PromptPredictor`, shared with
    the SAM 2 backend (:class:`~ovseg.models.proposals.sam2.SAM2Predictor`).

    Args:
        arch (str): 'vit_b' (default), 'vit_l', 'vit_h' or 'tiny' (tests).
        checkpoint (str, optional): SAM weights (the official ``sam_vit_*.pth`` files or a state dict saved
            from this module), read with ``torch.load(weights_only=True)``.
        image_size (int): encoder input side. Default 1024 (released weights need 1024).
        strict (bool): raise when the checkpoint's keys differ from the model's (names listed);
            otherwise warn. Default True.
        prompt_dim (int): image-embedding / prompt width (see :func:`build_sam_model`). Default 256.
        **arch_overrides: image-encoder settings (see :func:`build_sam_model`).
    """

    stage_submodules = ('model.image_encoder',)  # StageTimer: segment-anything's ImageEncoderViT

    def __init__(self, arch='vit_b', checkpoint=None, image_size=1024, strict=True, prompt_dim=PROMPT_DIM,
                 **arch_overrides):
        super().__init__()
        from segment_anything.utils.transforms import ResizeLongestSide
        self.arch = arch
        self.model = build_sam_model(arch, image_size, prompt_dim, **arch_overrides)
        self.transform = ResizeLongestSide(image_size)
        if checkpoint is not None:
            self.load_checkpoint(checkpoint, strict=strict)
        self.requires_grad_(False)  # frozen: tools/test.py then lets checkpoints omit SAM's keys

    @property
    def image_size(self):
        return self.model.image_encoder.img_size

    @property
    def mask_input_size(self):
        """(h, w) of a low-resolution mask prompt (256x256 at image_size 1024)."""
        return tuple(self.model.prompt_encoder.mask_input_size)

    @property
    def device(self):
        return self.model.pixel_mean.device

    def load_checkpoint(self, path, strict=True):
        """Load SAM weights (official names, or this module's with a ``model.`` prefix).

        Returns:
            tuple[list[str], list[str]]: missing and unexpected keys.
        """
        state = load_state_dict_file(path)
        if state and all(k.startswith('model.') for k in state):
            state = {k[len('model.'):]: v for k, v in state.items()}
        result = self.model.load_state_dict(state, strict=False)
        missing, unexpected = sorted(result.missing_keys), sorted(result.unexpected_keys)
        if missing or unexpected:
            msg = (f'SAM checkpoint {path} does not match arch {self.arch!r}: missing keys {missing[:10]}'
                   f'{" ..." if len(missing) > 10 else ""}; unexpected keys {unexpected[:10]}'
                   f'{" ..." if len(unexpected) > 10 else ""}.')
            if strict:
                raise KeyError(msg)
            print_log(msg, logger='current', level=30)
        return missing, unexpected

    # ------------------------------------------------------------------------------------- image
    @torch.no_grad()
    def embed_image(self, image):
        """Compute the image embedding once; pass the result to every :meth:`predict` call.

        Args:
            image (np.ndarray | Tensor): (H, W, 3) uint8 RGB.

        Returns:
            SAMImage
        """
        x, input_size, original_size = self.prepare_image(image)
        return SAMImage(embedding=self.model.image_encoder(x), input_size=input_size,
                        original_size=original_size)

    def prepare_image(self, image):
        """SamPredictor's preprocessing: (H, W, 3) uint8 RGB -> the encoder input (1, 3, S, S) (long side
        resized to S with PIL, SAM's normalisation, zero padding), the resized (h, w) and the original (H, W).

        For callers that run the encoder their own way on the same input (Trident's aggregation reads the
        last block's attention in that pass) and build the :class:`SAMImage` from its output.
        """
        array = np.ascontiguousarray(image.cpu().numpy() if torch.is_tensor(image) else image)
        if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
            raise ValueError(f'SAM expects an (H, W, 3) uint8 RGB image, got {array.shape} {array.dtype}.')
        resized = self.transform.apply_image(array)
        x = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None]
        return self.model.preprocess(x), tuple(x.shape[-2:]), tuple(array.shape[:2])

    def encode(self, images):
        """Image encoder on a batch already in SAM's input frame: (B, 3, S, S) normalised with
        ``pixel_mean`` / ``pixel_std`` (0-255 scale), S = ``image_size`` -> (B, prompt_dim, S/16, S/16).

        For models that preprocess images their own way (FrozenSeg resizes the padded image to S x S);
        :meth:`embed_image` is SAM's own preprocessing. Gradients are not tracked (SAM is frozen).
        """
        size = self.image_size
        if images.dim() != 4 or tuple(images.shape[-3:]) != (3, size, size):
            raise ValueError(f'SAM encodes (B, 3, {size}, {size}) inputs, got {tuple(images.shape)}.')
        with torch.no_grad():
            return self.model.image_encoder(images)

    def normalize(self, images):
        """(B, 3, H, W) RGB on the 0-255 scale -> SAM-normalised (``(x - pixel_mean) / pixel_std``)."""
        return (images - self.model.pixel_mean) / self.model.pixel_std

    # ----------------------------------------------------------------------------------- prompts
    def to_input_frame(self, coords, original_size):
        """(..., 2) xy pixel coordinates of an (H, W) image -> SAM's input frame, in the input's dtype.

        Floating tensors keep their dtype (float64 prompts are scaled in float64 as ``SamPredictor`` does
        with numpy prompts); integer tensors become float32.
        """
        old_h, old_w = original_size
        new_h, new_w = self.transform.get_preprocess_shape(old_h, old_w, self.image_size)
        coords = coords if coords.is_floating_point() else coords.float()
        return coords * coords.new_tensor([new_w / old_w, new_h / old_h])

    def encode_masks(self, masks, shared_unbatched=False):
        """Dense prompt embeddings of low-resolution mask logits.

        Args:
            masks (Tensor): (N, 1, 4g, 4g) logits; or (1, 4g, 4g) with ``shared_unbatched``.
            shared_unbatched (bool): embed a 3-d mask as ``SamPredictor.predict_torch`` does when given
                one, which Trident relies on: the prompt encoder's LayerNorm2d then normalises over
                the mask rows instead of the channels. Default False.

        Returns:
            Tensor: (N, 256, g, g) (N = 1 for ``shared_unbatched``).
        """
        if shared_unbatched:
            if masks.dim() != 3 or masks.shape[0] != 1:
                raise ValueError(f'shared_unbatched needs a (1, h, w) mask, got {tuple(masks.shape)}.')
            return self.model.prompt_encoder.mask_downscaling(masks)[None]
        if masks.dim() != 4 or masks.shape[1] != 1:
            raise ValueError(f'mask prompts must be (N, 1, h, w), got {tuple(masks.shape)}.')
        if tuple(masks.shape[-2:]) != self.mask_input_size:
            raise ValueError(f'mask prompts must be {self.mask_input_size}, got {tuple(masks.shape[-2:])}.')
        return self.model.prompt_encoder.mask_downscaling(masks)

    @torch.no_grad()
    def decode(self, image, points=None, labels=None, boxes=None, dense=None, multimask_output=True,
               image_pe=None, share_image=True):
        """One prompt batch through the prompt encoder and mask decoder (input-frame coordinates).

        Args:
            image (SAMImage): from :meth:`embed_image`.
            points (Tensor, optional): (N, P, 2) xy in SAM's input frame.
            labels (Tensor, optional): (N, P): 1 positive, 0 negative, -1 padding.
            boxes (Tensor, optional): (N, 4) xyxy in SAM's input frame.
            dense (Tensor, optional): (N or 1, 256, g, g) mask embeddings from :meth:`encode_masks`;
                None uses SAM's "no mask" embedding.
            multimask_output (bool): three masks per prompt instead of one. Default True.
            image_pe (Tensor, optional): the dense positional encoding, to reuse across batches.
            share_image (bool): with one dense embedding for all prompts, run the decoder on one copy
                of the image tokens (:mod:`~ovseg.models.proposals.shared_decoder`; same outputs, less
                work). Default True.

        Returns:
            SAMMasks
        """
        encoder, decoder = self.model.prompt_encoder, self.model.mask_decoder
        point_pair = (points, labels) if points is not None else None
        sparse, no_mask = encoder(points=point_pair, boxes=boxes, masks=None)
        dense = no_mask[:1] if dense is None else dense
        image_pe = encoder.get_dense_pe() if image_pe is None else image_pe
        if share_image and dense.shape[0] == 1:
            decoded = decode_tokens(decoder, image.embedding, image_pe, sparse, dense)
            keep = output_slice(multimask_output)
            return SAMMasks(low_res_logits=decode_masks(decoder, decoded)[:, keep], iou=decoded.iou[:, keep])
        if dense.shape[0] == 1 and sparse.shape[0] > 1:
            dense = dense.expand(sparse.shape[0], -1, -1, -1)
        logits, iou = decoder(image_embeddings=image.embedding, image_pe=image_pe,
                              sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                              multimask_output=multimask_output)
        return SAMMasks(low_res_logits=logits, iou=iou)

    @torch.no_grad()
    def decode_tokens(self, image, points=None, labels=None, boxes=None, dense=None, image_pe=None):
        """First half of :meth:`decode` (transformer and IoU head) for prompts sharing one dense embedding.

        Returns:
            DecodedTokens: pass it to :meth:`decode_masks` for the prompts whose masks are needed.
        """
        encoder = self.model.prompt_encoder
        point_pair = (points, labels) if points is not None else None
        sparse, no_mask = encoder(points=point_pair, boxes=boxes, masks=None)
        image_pe = encoder.get_dense_pe() if image_pe is None else image_pe
        return decode_tokens(self.model.mask_decoder, image.embedding, image_pe, sparse,
                             no_mask[:1] if dense is None else dense)

    @torch.no_grad()
    def decode_masks(self, decoded, rows=None):
        """(B', 4, 4g, 4g) logits of every mask token (single + 3 multimask) of the prompts ``rows``."""
        return decode_masks(self.model.mask_decoder, decoded, rows)

    @torch.no_grad()
    def grid_masks(self, image, coords, iou_thresh=0.0, image_pe=None):
        """Single-point prompts of an automatic grid -> the multimask outputs above an IoU threshold.

        Only the points with a mask above ``iou_thresh`` are upscaled (the IoU head does not depend on
        the upscaling), on one copy of the image tokens (:mod:`~ovseg.models.proposals.shared_decoder`).

        Args:
            image (SAMImage): from :meth:`embed_image`.
            coords (Tensor): (N, 2) xy points in SAM's input frame (label 1 each).
            iou_thresh (float): keep masks whose predicted IoU is above it; 0 keeps all. Default 0.
            image_pe (Tensor, optional): :meth:`dense_pe`, to reuse across batches.

        Returns:
            tuple[Tensor, Tensor, Tensor]: (3N,) predicted IoU of the three masks of every point
            (point-major), (K,) indices of the kept masks into it, (K, 4g, 4g) their logits.
        """
        labels = torch.ones(coords.shape[0], 1, dtype=torch.int, device=coords.device)
        decoded = self.decode_tokens(image, coords[:, None], labels, image_pe=image_pe)
        iou = decoded.iou[:, 1:].flatten()  # the three multimask outputs of each point, point-major
        rows = torch.arange(len(iou), device=iou.device)
        if iou_thresh > 0.0:
            rows = rows[iou > iou_thresh]
        prompts, token = torch.unique(rows // 3, return_inverse=True)
        low_res = self.decode_masks(decoded, prompts)[:, 1:].flatten(0, 1)[token * 3 + rows % 3]
        return iou, rows, low_res

    def dense_pe(self):
        """(1, 256, g, g) positional encoding of the image embedding (the same for every image)."""
        return self.model.prompt_encoder.get_dense_pe()

    @property
    def mask_threshold(self):
        """Logit above which a pixel belongs to a mask (0)."""
        return self.model.mask_threshold

    def upsample(self, low_res_logits, image):
        """(N, M, 4g, 4g) logits -> (N, M, H, W) logits at the original size (threshold at 0 for masks)."""
        return self.model.postprocess_masks(low_res_logits, image.input_size, image.original_size)
