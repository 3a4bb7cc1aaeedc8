"""SAM 3 (Carion et al. 2025) text prompts through transformers' ``Sam3Model``: one image, many prompts.

The network, its image processor (``1008 x 1008`` bilinear resize, mean/std 0.5) and its tokenizer
(CLIP BPE, 32 tokens) are transformers'. What ovseg adds is the split that makes a vocabulary cheap: the
image is encoded once per image, the prompts once per vocabulary, and the prompt-conditioned part (DETR
encoder and decoder, presence, box, mask and semantic heads) runs on batches of prompts against one
shared (expanded, not copied) image encoding. Outputs equal ``Sam3Model(pixel_values, input_ids)`` run
prompt by prompt, within float rounding.
"""
import gzip
from dataclasses import dataclass
from typing import Tuple

import numpy as np
import torch
import torch.nn as nn

from ovseg.models.proposals.hf_weights import load_pretrained, require_transformers, resolve_model_folder
from ovseg.registry import MODELS

SAM3_MODEL_ID = 'facebook/sam3'  # gated on the hub: accept the licence there, then `hf auth login`
TEXT_LENGTH = 32  # Sam3Processor pads every prompt to 32 tokens

# Random-weight architectures: 'sam3' is transformers' default Sam3Config (the released model's size);
# 'tiny' is for tests (32-d everywhere, 2 ViT blocks on a 112 x 112 input, 5 queries, 1 layer each).
SAM3_ARCHS = {
    'sam3': dict(),
    'tiny': dict(
        vision=dict(backbone=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, patch_size=14, window_size=4, global_attn_indexes=[1],
                                  pretrain_image_size=56),
                    fpn_hidden_size=32, scale_factors=[4.0, 2.0, 1.0, 0.5]),
        text=dict(hidden_size=32, intermediate_size=64, projection_dim=32, num_hidden_layers=1,
                  num_attention_heads=2, max_position_embeddings=TEXT_LENGTH),
        geometry=dict(hidden_size=32, num_layers=1, num_attention_heads=2, intermediate_size=64),
        detr_encoder=dict(hidden_size=32, num_layers=1, num_attention_heads=2, intermediate_size=64),
        detr_decoder=dict(hidden_size=32, num_layers=1, num_queries=5, num_attention_heads=2,
                          intermediate_size=64),
        mask_decoder=dict(hidden_size=32, num_upsampling_stages=3, num_attention_heads=2)),
}


def build_sam3_config(arch='sam3', image_size=1008):
    """A transformers ``Sam3Config`` of the released size ('sam3') or 'tiny', at ``image_size`` (x14)."""
    require_transformers('SAM 3')
    from transformers import Sam3Config
    from transformers.models.sam3 import configuration_sam3 as cfg
    if arch not in SAM3_ARCHS:
        raise ValueError(f'Unknown SAM 3 arch {arch!r}; choose from {sorted(SAM3_ARCHS)}.')
    if image_size % 14:
        raise ValueError(f'image_size must be a multiple of 14 (the patch size), got {image_size}.')
    spec = SAM3_ARCHS[arch]
    if not spec:
        config = Sam3Config()
        config.vision_config.backbone_config.image_size = image_size
        return config
    vision = spec['vision']
    backbone = cfg.Sam3ViTConfig(image_size=image_size, **vision['backbone'])
    return Sam3Config(
        vision_config=cfg.Sam3VisionConfig(backbone_config=backbone,
                                           fpn_hidden_size=vision['fpn_hidden_size'],
                                           scale_factors=vision['scale_factors']),
        text_config=dict(vocab_size=49408, **spec['text']),  # the CLIP BPE vocabulary
        geometry_encoder_config=cfg.Sam3GeometryEncoderConfig(**spec['geometry']),
        detr_encoder_config=cfg.Sam3DETREncoderConfig(**spec['detr_encoder']),
        detr_decoder_config=cfg.Sam3DETRDecoderConfig(**spec['detr_decoder']),
        mask_decoder_config=cfg.Sam3MaskDecoderConfig(**spec['mask_decoder']))


def clip_bpe_tokenizer():
    """transformers' ``CLIPTokenizer`` from the CLIP BPE merges open_clip ships (what SAM 3's tokenizer is),
    for random-weight models; released models bring their own tokenizer files."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizer
    with gzip.open(default_bpe()) as handle:
        lines = handle.read().decode('utf-8').split('\n')
    merges = [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]  # CLIP's SimpleTokenizer slice
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + '</w>' for s in symbols] + [''.join(m) for m in merges]
    vocab += ['<|startoftext|>', '<|endoftext|>']
    return CLIPTokenizer(vocab={v: i for i, v in enumerate(vocab)}, merges=merges)


@dataclass
class SAM3Image:
    """SAM 3's encoding of one image (the ViT and its FPN), shared by every prompt batch.

    Attributes:
        vision: transformers' ``Sam3VisionEncoderOutput`` of batch 1.
        original_size (tuple[int, int]): (H, W) of the image.
    """

    vision: object
    original_size: Tuple[int, int]


@dataclass
class SAM3Text:
    """Encoded prompts (once per vocabulary).

    Attributes:
        prompts (tuple[str]): the P prompts.
        features (Tensor): (P, 32, C) projected text features (``get_text_features(...).pooler_output``).
        mask (Tensor): (P, 32) attention mask (1 for tokens, 0 for padding).
    """

    prompts: Tuple[str, ...]
    features: torch.Tensor
    mask: torch.Tensor

    def __len__(self):
        return len(self.prompts)

    def rows(self, index):
        return SAM3Text(tuple(self.prompts[i] for i in range(len(self))[index]), self.features[index],
                        self.mask[index])


@MODELS.register_module()
class SAM3TextPrompter(nn.Module):
    """Frozen SAM 3 (transformers) answering text prompts on one encoded image.

    Call graph::

        embed_image(rgb uint8)      Sam3ImageProcessor ─ Sam3Model.get_vision_features (once per image)
        encode_text(prompts)        Sam3Processor tokenizer ─ Sam3Model.get_text_features (per vocabulary)
        predict(image, text)        Sam3Model on the expanded image encoding: DETR encoder/decoder, heads
                                    -> pred_masks (P, Q, h, w), pred_logits (P, Q), presence_logits (P, 1),
                                       semantic_seg (P, 1, h, w), pred_boxes (P, Q, 4) xyxy in [0, 1]

    Args:
        pretrained (str, optional): Hugging Face id or local folder of a transformers SAM 3 model, read
            from safetensors, e.g. 'facebook/sam3' (the configs'; gated on the hub). Default None: random
            weights of ``arch`` (smoke runs, benchmarks, tests; what ``random_weights`` and full-model
            checkpoints build before loading their weights), with the CLIP BPE tokenizer.
        arch (str, optional): size of a random-weight model: 'sam3' (the released size; default when
            ``pretrained`` is None) or 'tiny' (tests). Exclusive with ``pretrained``.
        image_size (int): input side of a random-weight model (a multiple of 14). Default 1008.
        cache_dir (str, optional): Hugging Face cache folder.
    """

    def __init__(self, pretrained=None, arch=None, image_size=1008, cache_dir=None):
        super().__init__()
        require_transformers('SAM 3')
        from transformers import Sam3ImageProcessor, Sam3Model, Sam3Processor
        if pretrained is not None and arch is not None:
            raise ValueError(f'Give SAM 3 weights (pretrained={pretrained!r}) or a random-weight arch '
                             f'(arch={arch!r}), not both.')
        if pretrained is None:
            arch = arch or 'sam3'
            self.model = Sam3Model(build_sam3_config(arch, image_size)).eval().requires_grad_(False)
            side = self.model.config.vision_config.backbone_config.image_size
            mask_side = side // self.model.config.vision_config.backbone_config.patch_size * 4
            images = Sam3ImageProcessor(size=dict(height=side, width=side),
                                        mask_size=dict(height=mask_side, width=mask_side))
            self.processor = Sam3Processor(images, clip_bpe_tokenizer())
        else:
            folder = resolve_model_folder(pretrained, cache_dir)
            self.model = load_pretrained(Sam3Model, folder)
            self.processor = Sam3Processor.from_pretrained(folder)
        self.arch = arch or pretrained

    @property
    def device(self):
        return self.model.text_projection.weight.device

    @property
    def num_queries(self):
        return int(self.model.config.detr_decoder_config.num_queries)

    @torch.no_grad()
    def embed_image(self, image):
        """(H, W, 3) uint8 RGB -> SAM3Image (the vision encoder runs once per image)."""
        array = np.ascontiguousarray(image.cpu().numpy() if torch.is_tensor(image) else image)
        array = array if array.flags.writeable else array.copy()  # torch.from_numpy in the processor
        if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
            raise ValueError(f'SAM 3 expects an (H, W, 3) uint8 RGB image, got {array.shape} {array.dtype}.')
        pixels = self.processor(images=array, return_tensors='pt')['pixel_values'].to(self.device)
        return SAM3Image(vision=self.model.get_vision_features(pixel_values=pixels),
                         original_size=tuple(array.shape[:2]))

    @torch.no_grad()
    def encode_text(self, prompts):
        """Prompts (list of str) -> SAM3Text, tokenized as ``Sam3Processor`` does (padded to 32 tokens).

        Raises:
            ValueError: a prompt is empty or longer than 32 tokens.
        """
        prompts = tuple(str(p) for p in prompts)
        if not prompts or not all(p.strip() for p in prompts):
            raise ValueError(f'SAM 3 needs non-empty text prompts, got {list(prompts)[:8]}.')
        tokens = self.processor(text=list(prompts), return_tensors='pt')
        if tokens['input_ids'].shape[1] > TEXT_LENGTH:
            lengths = tokens['attention_mask'].sum(dim=1)
            long = [p for p, n in zip(prompts, lengths.tolist()) if n > TEXT_LENGTH]
            raise ValueError(f'SAM 3 prompts hold at most {TEXT_LENGTH} tokens; too long: {long[:4]}.')
        ids, mask = tokens['input_ids'].to(self.device), tokens['attention_mask'].to(self.device)
        features = self.model.get_text_features(input_ids=ids, attention_mask=mask).pooler_output
        return SAM3Text(prompts=prompts, features=features, mask=mask)

    @torch.no_grad()
    def predict(self, image, text):
        """All P prompts of ``text`` on ``image`` in one forward (the image encoding expanded, not copied).

        Returns:
            Sam3ImageSegmentationOutput: batch P (see the class call graph).
        """
        from transformers.modeling_outputs import BaseModelOutputWithPooling
        from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput
        num = len(text)
        def expand(maps):
            return tuple(f.expand(num, -1, -1, -1) for f in maps)

        vision = Sam3VisionEncoderOutput(fpn_hidden_states=expand(image.vision.fpn_hidden_states),
                                         fpn_position_encoding=expand(image.vision.fpn_position_encoding))
        text_embeds = BaseModelOutputWithPooling(pooler_output=text.features)
        return self.model(vision_embeds=vision, text_embeds=text_embeds, attention_mask=text.mask)
