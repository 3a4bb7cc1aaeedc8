"""Text embeddings of normal / anomalous state prompts for a class name (WinCLIP-style ensembles)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ovseg.models.utils.precision import float32_region
from ovseg.registry import MODELS
from ovseg.text.anomaly_prompts import get_prompt_set, state_prompts


@MODELS.register_module()
class AnomalyStatePrompts(nn.Module):
    """(normal, anomalous) text embeddings of a class name from a prompt ensemble.

    Every prompt (state x template, see :mod:`ovseg.text.anomaly_prompts`) goes through the CLIP text
    tower; each state group is averaged into one row. WinCLIP averages the **unnormalised** prompt
    embeddings (``normalize_prompts=False``); CLIP's zero-shot classifier normalises each prompt first.
    Per-prompt embeddings are cached per (CLIP model, class name) in this instance.

    Args:
        prompt_set (str | dict): 'winclip' or a dict with 'normal', 'anomalous', 'templates'.
            Default 'winclip'.
        normalize_prompts (bool): L2-normalise each prompt embedding before the mean. Default False.
        batch_size (int): prompts per text-tower call. Default 256.
    """

    def __init__(self, prompt_set='winclip', normalize_prompts=False, batch_size=256):
        super().__init__()
        self.prompt_set = get_prompt_set(prompt_set)
        self.normalize_prompts = bool(normalize_prompts)
        self.batch_size = int(batch_size)
        self._cache = {}

    def prompts(self, class_name):
        """(normal prompts, anomalous prompts) of ``class_name``."""
        return state_prompts(class_name, self.prompt_set)

    def tokenize(self, backbone, prompts):
        """(N,) prompts -> (N, context_length) int64 token ids (the backbone's tokenizer)."""
        return backbone.tokenizer(list(prompts)).long()

    @torch.no_grad()
    def prompt_embeddings(self, backbone, prompts):
        """(N,) prompts -> (N, C) float32 text embeddings (unnormalised unless ``normalize_prompts``).

        The text tower runs without autocast, whatever the caller's precision (the result is cached).
        """
        tokens = self.tokenize(backbone, prompts)
        device = next(backbone.clip.parameters()).device
        with float32_region(device):
            out = torch.cat([backbone.encode_tokens(tokens[i:i + self.batch_size].to(device)).float()
                             for i in range(0, len(tokens), self.batch_size)])
        return F.normalize(out, dim=-1) if self.normalize_prompts else out

    def state_embeddings(self, backbone, class_name):
        """Per-prompt embeddings of one class name, cached per (CLIP model, class name).

        Returns:
            tuple[Tensor, Tensor]: (normal (P_n, C), anomalous (P_a, C)) on the backbone's device.
        """
        key = (id(backbone.clip), class_name)
        if key not in self._cache:
            normal, anomalous = self.prompts(class_name)
            self._cache[key] = (self.prompt_embeddings(backbone, normal),
                                self.prompt_embeddings(backbone, anomalous))
        device = next(backbone.clip.parameters()).device
        return tuple(t.to(device) for t in self._cache[key])

    def forward(self, backbone, class_name):
        """Text embeddings of one class name.

        Args:
            backbone (OpenCLIPBackbone): gives ``clip``, ``tokenizer`` and ``encode_tokens``.
            class_name (str): object / texture name put into the states.

        Returns:
            Tensor: (2, C) rows [normal, anomalous]: the mean of each state group (not normalised).
        """
        return torch.stack([group.mean(dim=0) for group in self.state_embeddings(backbone, class_name)])
