"""Trainable few-shot anomaly segmentor for AdaptCLIP (few-shot predict + AdaptCLIP's training loss)."""
import torch

from ovseg.models.anomaly.anomalyclip.segmentor import AnomalyCLIPSegmentor
from ovseg.models.anomaly.anomalyclip.text_encoder import text_tower
from ovseg.models.anomaly.fewshot_segmentor import FewShotAnomalySegmentor
from ovseg.registry import MODELS


@MODELS.register_module()
class AdaptCLIPSegmentor(FewShotAnomalySegmentor):
    """:class:`FewShotAnomalySegmentor` whose head's adapters learn on an auxiliary labelled dataset.

    Call graph::

        loss(inputs, data_samples)
          ├─ one reference per image, drawn at random from its metainfo ``reference_paths`` (the category's
          │  normal training images: the dataset's ``references=dict(k_shot=None)``), loaded like the queries
          ├─ targets(data_samples)                 masks (nonzero = anomalous) and image labels
          └─ head.loss(backbone, inputs, references, gt, labels)
        predict(inputs, data_samples, memory=None) as FewShotAnomalySegmentor (zero-shot without references)

    The CLIP stays frozen; the three adapters train. The head's ``text_width`` and ``embed_dim`` are taken
    from the backbone when the config omits them.

    Args:
        backbone (dict): ``OpenCLIPBackbone`` config (a ViT).
        head (dict): ``AdaptCLIPHead`` config.
        reference_shots (int): reference images per query during training. Default 1 (the original).
        **kwargs: :class:`FewShotAnomalySegmentor` arguments.
    """

    def __init__(self, backbone, head, reference_shots=1, **kwargs):
        super().__init__(backbone, head, **kwargs)
        self.reference_shots = int(reference_shots)

    def complete_head_cfg(self, head):
        """Fill ``text_width`` and ``embed_dim`` from the backbone (ValueError when they disagree)."""
        widths = dict(text_width=int(text_tower(self.backbone.clip).ln_final.weight.shape[0]),
                      embed_dim=int(self.backbone.clip.visual.output_dim))
        for key, width in widths.items():
            if head.setdefault(key, width) != width:
                raise ValueError(f'head.{key}={head[key]} but the CLIP is {width} wide')
        return head

    def training_references(self, data_samples, device):
        """(B, s, 3, H, W) normal images, each query's drawn at random from its ``reference_paths``."""
        chosen = []
        for sample in data_samples:
            pool = sample.metainfo.get('reference_paths')
            if not pool:
                raise ValueError('AdaptCLIP training needs normal reference images per image: build the training '
                                 'dataset with references=dict(k_shot=None) (every normal training image of the '
                                 'category as a pool)')
            picks = torch.randint(0, len(pool), (self.reference_shots,)).tolist()
            chosen.extend(pool[i] for i in picks)
        inputs = self.load_references(chosen, device)
        return inputs.reshape(len(data_samples), self.reference_shots, *inputs.shape[1:])

    def loss(self, inputs, data_samples):
        """Loss terms (``loss_image``, ``loss_focal``, ``loss_dice``) of a training batch."""
        gt, labels = AnomalyCLIPSegmentor.targets(data_samples, inputs.shape[-2:], inputs.device)
        references = self.training_references(data_samples, inputs.device)
        return self.head.loss(self.backbone, inputs, references, gt, labels)
