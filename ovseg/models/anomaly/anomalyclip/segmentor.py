"""Trainable anomaly segmentor for AnomalyCLIP (the zero-shot segmentor's predict + a loss)."""
import torch
from mmseg.models.segmentors.base import BaseSegmentor

from ovseg.models.anomaly.anomaly_segmentor import ZeroShotAnomalySegmentor
from ovseg.registry import MODELS
from .text_encoder import text_tower


@MODELS.register_module()
class AnomalyCLIPSegmentor(ZeroShotAnomalySegmentor):
    """:class:`ZeroShotAnomalySegmentor` whose head learns prompts from an auxiliary labelled dataset.

    Call graph::

        loss(inputs, data_samples)
          ├─ masks and labels from data_samples    gt_sem_seg (nonzero = anomalous), anomaly_label
          └─ head.loss(backbone, inputs, gt, labels) CE + lam x (focal + dice + dice) per layer
        predict(inputs, data_samples)               as ZeroShotAnomalySegmentor (class names unused)

    The CLIP backbone stays frozen; only the head's prompt learner trains. The head's ``text_width``
    is taken from the backbone's text tower when the config omits it.

    Args:
        backbone (dict): ``OpenCLIPBackbone`` config (a ViT).
        head (dict): ``AnomalyCLIPHead`` config.
        test_cfg (dict, optional): ``threshold`` adds a binary ``pred_sem_seg``.
        precision (str): inference precision of the vision tower, 'fp32' (default), 'bf16' or 'fp16';
            ``loss`` ignores it.
        data_preprocessor (dict): ``SegDataPreProcessor`` with CLIP mean/std, RGB; training batches
            need one image size (``size``) so that masks stack.
        **kwargs: other :class:`ZeroShotAnomalySegmentor` arguments.
    """

    def __init__(self, backbone, head, class_names=None, default_class_name='object', test_cfg=None,
                 precision='fp32', data_preprocessor=None, init_cfg=None):
        if isinstance(data_preprocessor, dict):
            data_preprocessor = MODELS.build(data_preprocessor)
        BaseSegmentor.__init__(self, data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        head = dict(head)
        width = int(text_tower(self.backbone.clip).ln_final.weight.shape[0])
        if head.setdefault('text_width', width) != width:
            raise ValueError(f"head.text_width={head['text_width']} but the CLIP text tower is {width} wide")
        self.head = MODELS.build(head)
        self.name_map = dict(class_names or {})
        self.default_class_name = default_class_name
        self.test_cfg = dict(test_cfg or {})
        self.precision = precision

    @staticmethod
    def targets(data_samples, size, device):
        """(B, H, W) float {0, 1} masks at ``size`` and (B,) int64 image labels.

        The label is the metainfo ``anomaly_label`` when present, else whether the mask is nonempty.
        """
        masks, labels = [], []
        for sample in data_samples:
            mask = (sample.gt_sem_seg.data[0] > 0).float()
            if tuple(mask.shape) != tuple(size):
                mask = torch.nn.functional.interpolate(mask[None, None], size=tuple(size), mode='nearest')[0, 0]
            masks.append(mask)
            label = sample.metainfo.get('anomaly_label')
            labels.append(int(label) if label is not None else int(mask.any()))
        return torch.stack(masks).to(device), torch.tensor(labels, dtype=torch.long, device=device)

    def loss(self, inputs, data_samples):
        """Loss terms (``loss_image``, ``loss_focal``, ``loss_dice``) of a training batch."""
        gt, labels = self.targets(data_samples, inputs.shape[-2:], inputs.device)
        out = self.head.loss(self.backbone, inputs, gt, labels)
        return {k: v for k, v in out.items() if k.startswith('loss_')}
