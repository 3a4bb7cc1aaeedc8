"""SAM 2 (Ravi et al. 2024) as an ovseg SAM backend, through transformers' ``Sam2Model``.

The network, its image processor and its mask post-processing are transformers' (pure PyTorch, CPU): the
image is resized to a ``1024 x 1024`` square (no padding, ImageNet mean/std), pixel prompts are scaled to
that square as ``Sam2Processor`` scales them, and 256 x 256 mask logits are upsampled bilinearly to the
image size as ``Sam2ImageProcessor.post_process_masks`` does. What ovseg adds is the backend interface of
:class:`~ovseg.models.proposals.prompt_predictor.PromptPredictor`, so automatic proposals, Trident-style
refinement and click/box prompts run unchanged on SAM 2 with the same thresholds.
"""
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np
import torch

from ovseg.models.proposals.hf_weights import load_pretrained, require_transformers, resolve_model_folder
from ovseg.models.proposals.prompt_predictor import PromptPredictor
from ovseg.models.proposals.sam import SAMMasks
from ovseg.registry import MODELS

# Hugging Face ids of the SAM 2.1 releases (transformers weights, safetensors).
SAM2_MODEL_IDS = {
    'hiera_t': 'facebook/sam2.1-hiera-tiny', 'hiera_s': 'facebook/sam2.1-hiera-small',
    'hiera_b+': 'facebook/sam2.1-hiera-base-plus', 'hiera_l': 'facebook/sam2.1-hiera-large',
}
# Image-encoder sizes of the releases (transformers' models/sam2/convert_sam2_to_hf.py get_config), for
# random-weight models of the published sizes; 'tiny' is for tests only (12-d first stage, 5 blocks).
SAM2_ARCHS = {
    'hiera_t': dict(backbone=dict(), channels=[768, 384, 192, 96]),
    'hiera_s': dict(backbone=dict(blocks_per_stage=[1, 2, 11, 2], global_attention_blocks=[7, 10, 13]),
                    channels=[768, 384, 192, 96]),
    'hiera_b+': dict(backbone=dict(hidden_size=112, embed_dim_per_stage=[112, 224, 448, 896],
                                   num_attention_heads_per_stage=[2, 4, 8, 16],
                                   blocks_per_stage=[2, 3, 16, 3], global_attention_blocks=[12, 16, 20],
                                   window_positional_embedding_background_size=[14, 14]),
                     channels=[896, 448, 224, 112]),
    'hiera_l': dict(backbone=dict(hidden_size=144, embed_dim_per_stage=[144, 288, 576, 1152],
                                  num_attention_heads_per_stage=[2, 4, 8, 16], blocks_per_stage=[2, 6, 36, 4],
                                  global_attention_blocks=[23, 33, 43],
                                  window_positional_embedding_background_size=[7, 7],
                                  window_size_per_stage=[8, 4, 16, 8]),
                    channels=[1152, 576, 288, 144]),
    'tiny': dict(backbone=dict(hidden_size=12, embed_dim_per_stage=[12, 24, 48, 96],
                               num_attention_heads_per_stage=[1, 1, 1, 1], blocks_per_stage=[1, 1, 2, 1],
                               global_attention_blocks=[3], window_size_per_stage=[8, 4, 4, 2],
                               window_positional_embedding_background_size=[7, 7]),
                 channels=[96, 48, 24, 12], fpn=32,
                 decoder=dict(hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32)),
}


def build_sam2_config(arch='hiera_l', image_size=1024):
    """A transformers ``Sam2Config`` of a released size (or 'tiny') at ``image_size`` (a multiple of 32).

    Returns:
        Sam2Config
    """
    require_transformers('SAM 2')
    from transformers import Sam2Config
    from transformers.models.sam2.configuration_sam2 import (Sam2HieraDetConfig, Sam2MaskDecoderConfig,
                                                             Sam2PromptEncoderConfig, Sam2VisionConfig)
    if arch not in SAM2_ARCHS:
        raise ValueError(f'Unknown SAM 2 arch {arch!r}; choose from {sorted(SAM2_ARCHS)}.')
    if image_size % 32:
        raise ValueError(f'image_size must be a multiple of 32, got {image_size}.')
    spec = SAM2_ARCHS[arch]
    grid = image_size // 4  # stride-4 patch embedding; the neck keeps three levels
    backbone = Sam2HieraDetConfig(image_size=[image_size, image_size], **spec['backbone'])
    fpn = spec.get('fpn', 256)
    levels = [[grid // 2 ** i, grid // 2 ** i] for i in range(3)]
    vision = Sam2VisionConfig(backbone_config=backbone, backbone_channel_list=spec['channels'],
                              fpn_hidden_size=fpn, backbone_feature_sizes=levels)
    prompt = Sam2PromptEncoderConfig(hidden_size=fpn, image_size=image_size)
    decoder = Sam2MaskDecoderConfig(**spec.get('decoder', {}))
    return Sam2Config(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)


@dataclass
class SAM2Image:
    """SAM 2's embedding of one image, reused by every prompt batch on that image.

    Attributes:
        embeddings (list[Tensor]): (1, C/8, 4g, 4g) and (1, C/4, 2g, 2g) high-resolution features and the
            (1, C, g, g) image embedding (g = 64 at 1024), as ``Sam2Model.get_image_embeddings`` returns them.
        input_size (tuple[int, int]): (S, S), the square the image was resized to.
        original_size (tuple[int, int]): (H, W) of the image given to :meth:`SAM2Predictor.embed_image`.
    """

    embeddings: List[torch.Tensor]
    input_size: Tuple[int, int]
    original_size: Tuple[int, int]

    @property
    def embedding(self):
        return self.embeddings[-1]


@MODELS.register_module()
class SAM2Predictor(PromptPredictor):
    """Frozen SAM 2 (transformers) with the SAM backend interface of ovseg.

    Call graph::

        embed_image(rgb uint8)          Sam2ImageProcessor (square resize, normalise) ─ image encoder (once)
        predict(image, points, ...)     PromptPredictor: checks ─ to_input_frame ─ decode in batches
          └─ decode                     Sam2PromptEncoder ─ Sam2MaskDecoder (one image, N prompts)
        grid_masks(image, coords)       automatic-grid points: the 3 masks of each, IoU-filtered
        upsample(logits, image)         Sam2ImageProcessor.post_process_masks (bilinear, no binarising)

    Args:
        pretrained (str, optional): Hugging Face id (or a key of ``SAM2_MODEL_IDS``) or local folder of a
            transformers SAM 2 model, read from safetensors, e.g. 'facebook/sam2.1-hiera-large' (the
            configs'). Default None: random weights of ``arch`` (smoke runs, benchmarks, tests; what
            ``random_weights`` and full-model checkpoints build before loading their weights).
        arch (str, optional): size of a random-weight model: 'hiera_t', 'hiera_s', 'hiera_b+', 'hiera_l'
            (default when ``pretrained`` is None) or 'tiny' (tests). Exclusive with ``pretrained``.
        image_size (int): input side of a random-weight model. Default 1024 (the released models').
        cache_dir (str, optional): Hugging Face cache folder.
    """

    square_input = True

    def __init__(self, pretrained=None, arch=None, image_size=1024, cache_dir=None):
        super().__init__()
        require_transformers('SAM 2')
        from transformers import Sam2ImageProcessor, Sam2Model
        if pretrained is not None and arch is not None:
            raise ValueError(f'Give SAM 2 weights (pretrained={pretrained!r}) or a random-weight arch '
                             f'(arch={arch!r}), not both.')
        if pretrained is None:
            arch = arch or 'hiera_l'
            self.model = Sam2Model(build_sam2_config(arch, image_size)).eval().requires_grad_(False)
            side = self.model.config.prompt_encoder_config.image_size
            self.processor = Sam2ImageProcessor(size=dict(height=side, width=side),
                                                mask_size=dict(height=side // 4, width=side // 4))
        else:
            folder = resolve_model_folder(SAM2_MODEL_IDS.get(pretrained, pretrained), cache_dir)
            self.model = load_pretrained(Sam2Model, folder)
            self.processor = Sam2ImageProcessor.from_pretrained(folder)
        self.arch = arch or pretrained

    @property
    def image_size(self):
        return int(self.model.config.prompt_encoder_config.image_size)

    @property
    def mask_input_size(self):
        """(h, w) of a low-resolution mask prompt (256 x 256 at image size 1024)."""
        return tuple(self.model.prompt_encoder.mask_input_size)

    @property
    def device(self):
        return self.model.no_memory_embedding.device

    @property
    def mask_threshold(self):
        """Logit above which a pixel belongs to a mask (0, as ``post_process_masks``'s default)."""
        return 0.0

    # ------------------------------------------------------------------------------------- image
    @torch.no_grad()
    def embed_image(self, image):
        """(H, W, 3) uint8 RGB -> SAM2Image (the image encoder runs once per image)."""
        array = np.ascontiguousarray(image.cpu().numpy() if torch.is_tensor(image) else image)
        array = array if array.flags.writeable else array.copy()  # torch.from_numpy in the processor
        if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
            raise ValueError(f'SAM 2 expects an (H, W, 3) uint8 RGB image, got {array.shape} {array.dtype}.')
        pixels = self.processor(images=array, return_tensors='pt')['pixel_values'].to(self.device)
        embeddings = self.model.get_image_embeddings(pixels)
        side = self.image_size
        return SAM2Image(embeddings=list(embeddings), input_size=(side, side),
                         original_size=tuple(array.shape[:2]))

    # ----------------------------------------------------------------------------------- prompts
    def to_input_frame(self, coords, original_size):
        """(..., 2) xy pixels of an (H, W) image -> the S x S input square, in float32 (``Sam2Processor``)."""
        height, width = original_size
        side = self.image_size
        coords = coords.float().clone()
        coords[..., 0] = coords[..., 0] * (side / width)
        coords[..., 1] = coords[..., 1] * (side / height)
        return coords

    def encode_masks(self, masks, shared_unbatched=False):
        """(N, 1, m, m) low-resolution mask logits -> (N, C, g, g) dense prompt embeddings."""
        if shared_unbatched:
            raise ValueError('Unbatched (1, m, m) mask prompts are a segment-anything quirk that Trident '
                             'relies on; SAM 2 takes mask prompts as (N, 1, m, m).')
        if masks.dim() != 4 or masks.shape[1] != 1:
            raise ValueError(f'mask prompts must be (N, 1, h, w), got {tuple(masks.shape)}.')
        if tuple(masks.shape[-2:]) != self.mask_input_size:
            raise ValueError(f'mask prompts must be {self.mask_input_size}, got {tuple(masks.shape[-2:])}.')
        return self.model.prompt_encoder.mask_embed(masks)

    def dense_pe(self):
        """(1, C, g, g) positional encoding of the image embedding (the same for every image)."""
        return self.model.get_image_wide_positional_embeddings()

    @torch.no_grad()
    def decode(self, image, points=None, labels=None, boxes=None, dense=None, multimask_output=True,
               image_pe=None):
        """One prompt batch through the prompt encoder and mask decoder (input-frame coordinates).

        Args:
            image (SAM2Image): from :meth:`embed_image`.
            points (Tensor, optional): (N, P, 2) xy in the input square.
            labels (Tensor, optional): (N, P): 1 positive, 0 negative, -1 padding.
            boxes (Tensor, optional): (N, 4) xyxy in the input square.
            dense (Tensor, optional): (1 or N, C, g, g) mask embeddings from :meth:`encode_masks`.
            multimask_output (bool): three masks per prompt; otherwise one (SAM 2 falls back to the best
                of the three when the single mask is unstable). Default True.
            image_pe (Tensor, optional): :meth:`dense_pe`, to reuse across batches.

        Returns:
            SAMMasks: (N, M, 4g, 4g) logits and (N, M) predicted IoU.
        """
        image_pe = self.dense_pe() if image_pe is None else image_pe
        sparse, no_mask = self.model.prompt_encoder(
            input_points=None if points is None else points[None].float(),
            input_labels=None if labels is None else labels[None].long(),
            input_boxes=None if boxes is None else boxes[None].float(), input_masks=None)
        dense = no_mask if dense is None else dense
        features = image.embeddings
        if dense.shape[0] != 1:  # one mask prompt per prompt: one decoder "image" per prompt
            num = sparse.shape[1]
            features = [f.expand(num, -1, -1, -1) for f in features]
            image_pe, sparse = image_pe.expand(num, -1, -1, -1), sparse.transpose(0, 1)
        logits, iou, _, _ = self.model.mask_decoder(
            image_embeddings=features[-1], image_positional_embeddings=image_pe,
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=multimask_output,
            high_resolution_features=features[:-1])
        if dense.shape[0] != 1:
            return SAMMasks(low_res_logits=logits[:, 0], iou=iou[:, 0])
        return SAMMasks(low_res_logits=logits[0], iou=iou[0])

    @torch.no_grad()
    def grid_masks(self, image, coords, iou_thresh=0.0, image_pe=None):
        """Single-point prompts of an automatic grid -> the multimask outputs above an IoU threshold.

        Returns:
            tuple[Tensor, Tensor, Tensor]: (3N,) predicted IoU (point-major), (K,) indices of the masks above
            ``iou_thresh`` (all when it is 0) and their (K, 4g, 4g) logits.
        """
        labels = torch.ones(coords.shape[0], 1, dtype=torch.int, device=coords.device)
        out = self.decode(image, coords[:, None], labels, multimask_output=True, image_pe=image_pe)
        iou = out.iou.flatten()
        rows = torch.arange(len(iou), device=iou.device)
        if iou_thresh > 0.0:
            rows = rows[iou > iou_thresh]
        return iou, rows, out.low_res_logits.flatten(0, 1)[rows]

    def upsample(self, low_res_logits, image):
        """(N, M, 4g, 4g) logits -> (N, M, H, W) logits at the original size (threshold at 0 for masks)."""
        sizes = [list(image.original_size)]
        return self.processor.post_process_masks([low_res_logits], sizes, binarize=False)[0]
