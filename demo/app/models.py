"""Which models the demo offers, and a pool that builds each once and reuses it.

A model is named on the command line (never from the page) by a preset key or a config path::

    --model maskclip                       configs/maskclip/maskclip_vit-b16_ade150.py
    --model clip-dinoiser CKPT             needs the converted CLIP-DINOiser checkpoint
    --model sam-refined                    MaskCLIP + SAM refinement (SAM weights: --sam-checkpoint)
    --model sam2-refined                   MaskCLIP + SAM 2 refinement (weights: --sam2-model)
    --model sam3                           SAM 3 text prompts (configs/sam3/sam3_ade150.py: facebook/sam3)
    --model fcclip CKPT                    needs the converted FC-CLIP checkpoint
    --model path/to/config.py [CKPT]       any ovseg segmentor config

The page shows the labels of these models in a drop-down and sends a label back; labels that the
server does not know are refused.
"""
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Preset:
    """A named model of the repository.

    Attributes:
        key (str): command-line name.
        label (str): name shown in the page.
        configs (tuple[str]): candidate config paths relative to the repository (the first that
            exists is used).
        needs_checkpoint (bool): trained weights beyond CLIP's are required (unless random weights).
        hint (str): how to get those weights.
        needs_sam (bool): SAM weights (``--sam-checkpoint``) are required (unless random weights).
        sam2 (bool): the refiner's SAM is SAM 2, with weights from ``--sam2-model`` (hub id or folder).
        cfg_options (tuple): (dotted key, value) config overrides.
    """

    key: str
    label: str
    configs: tuple
    needs_checkpoint: bool = False
    hint: str = ''
    needs_sam: bool = False
    sam2: bool = False
    cfg_options: tuple = ()

    def config_path(self, root=REPO_ROOT):
        """The first existing config, or None."""
        return next((root / c for c in self.configs if (root / c).is_file()), None)


PRESETS = (
    Preset('maskclip', 'MaskCLIP ViT-B/16', ('configs/maskclip/maskclip_vit-b16_ade150.py',)),
    Preset('clip-dinoiser', 'CLIP-DINOiser ViT-B/16',
           ('configs/clip_dinoiser/clip_dinoiser_vit-b16_ade150.py',), needs_checkpoint=True,
           hint='convert the official weights with '
                'tools/model_converters/clip_dinoiser_to_ovseg.py'),
    Preset('sam-refined', 'MaskCLIP + SAM refinement',
           ('configs/sam_clip/maskclip_vit-b16_samrefine-vit-b_ade150.py',), needs_sam=True),
    Preset('sam2-refined', 'MaskCLIP + SAM 2 refinement',
           ('configs/sam2_clip/maskclip_vit-b16_samrefine-sam2-hiera-l_ade150.py',), sam2=True),
    # SAM 3 weights come from the hub id of the config (or --cfg-options through a config file of one's own)
    Preset('sam3', 'SAM 3 (text prompts)', ('configs/sam3/sam3_ade150.py',)),
    Preset('fcclip', 'FC-CLIP ConvNeXt-L',
           ('configs/fcclip/fcclip_convnext-l_ade150.py', 'configs/fcclip_ade.py',
            'configs/fcclip/fcclip_convnext-l_coco-panoptic.py'), needs_checkpoint=True,
           hint='convert the released weights with tools/model_converters/fcclip_to_ovseg.py',
           # The configs end with PackPanopticInputs, which OVSegInferencer does not treat as the
           # final packing step; semantic inference needs only the released test resize.
           cfg_options=(('test_pipeline', (
               dict(type='Resize', scale=(1333, 800), keep_ratio=True, backend='pillow',
                    interpolation='bilinear'), dict(type='PackSegInputs'))),)),
)
PRESETS_BY_KEY = {p.key: p for p in PRESETS}


@dataclass(frozen=True)
class ModelSpec:
    """One model the server offers.

    Attributes:
        label (str): drop-down label.
        config (str): config file path.
        checkpoint (str, optional): weights file.
        cfg_options (dict): config overrides (e.g. the SAM checkpoint of SAM-refined configs).
    """

    label: str
    config: str
    checkpoint: Optional[str] = None
    cfg_options: dict = field(default_factory=dict, hash=False, compare=False)


def available_presets(root=REPO_ROOT):
    """Presets whose config file exists (for --help and error messages)."""
    return [p for p in PRESETS if p.config_path(root) is not None]


def resolve_model(name, checkpoint=None, random_weights=False, sam_checkpoint=None, root=REPO_ROOT,
                  sam2_model=None):
    """A command-line model name (preset key or config path) -> ModelSpec.

    Raises:
        ValueError: unknown preset, missing config file, or a preset that needs a checkpoint
            without one (unless ``random_weights``); the message says what to do.
    """
    preset = PRESETS_BY_KEY.get(str(name).lower())
    if preset is None:
        path = Path(name)
        if not path.is_file():
            keys = ', '.join(p.key for p in available_presets(root))
            raise ValueError(f'--model {name}: neither a preset ({keys}) nor an existing config '
                             f'file.')
        return ModelSpec(label=path.stem, config=str(path), checkpoint=checkpoint)
    config = preset.config_path(root)
    if config is None:
        raise ValueError(f'--model {preset.key}: its config ({preset.configs[0]}) is not in this '
                         f'checkout.')
    if preset.needs_checkpoint and checkpoint is None and not random_weights:
        raise ValueError(f'--model {preset.key} needs its trained checkpoint: --model {preset.key} '
                         f'PATH ({preset.hint}), or --random-weights to try the interface.')
    if preset.needs_sam and sam_checkpoint is None and not random_weights:
        raise ValueError(f'--model {preset.key} needs SAM weights: add --sam-checkpoint '
                         f'sam_vit_b_01ec64.pth, or --random-weights to try the interface.')
    options = {key: list(value) if isinstance(value, tuple) else value
               for key, value in preset.cfg_options}
    if preset.needs_sam and sam_checkpoint:
        options['model.sam_refiner.sam.checkpoint'] = str(sam_checkpoint)
    if preset.sam2 and sam2_model:
        options['model.sam_refiner.sam.pretrained'] = str(sam2_model)
    return ModelSpec(label=preset.label, config=str(config), checkpoint=checkpoint,
                     cfg_options=options)


def label_for_config(config):
    """Drop-down label of a --config value: the preset's label when it is a preset config."""
    resolved = Path(config).resolve()
    for preset in PRESETS:
        path = preset.config_path()
        if path is not None and path.resolve() == resolved:
            return preset.label
    return Path(config).stem


class ModelPool:
    """Builds inferencers on first use and keeps the ``max_loaded`` most recently used.

    Args:
        specs (Sequence[ModelSpec]): the models offered, first = default.
        device (str): 'cpu' or 'cuda[:N]'.
        random_weights (bool): build every model with random weights (smoke test).
        max_loaded (int): models kept in memory at once. Default 2.
        max_pixels (int, optional): passed to the inferencers.
        builder (callable, optional): ``builder(spec) -> inferencer``; default builds an
            :class:`ovseg.apis.OVSegInferencer`.

    Callers serialise the use of a returned inferencer (the app runs one model call at a time).
    """

    def __init__(self, specs, device='cpu', random_weights=False, max_loaded=2, max_pixels=None,
                 builder=None):
        if not specs:
            raise ValueError('Give at least one model.')
        labels = [s.label for s in specs]
        if len(set(labels)) != len(labels):
            raise ValueError(f'Model labels must be unique, got {labels}.')
        self.specs = OrderedDict((s.label, s) for s in specs)
        self.device = device
        self.random_weights = bool(random_weights)
        self.max_loaded = max(1, int(max_loaded))
        self.max_pixels = max_pixels
        self._builder = builder or self._build
        self._loaded = OrderedDict()
        self._extras = {}
        self._lock = threading.Lock()

    @property
    def labels(self):
        """list[str]: labels in command-line order."""
        return list(self.specs)

    @property
    def default_label(self):
        return self.labels[0]

    def is_loaded(self, label):
        return label in self._loaded

    def spec(self, label):
        """ModelSpec of a label sent by the page; unknown labels are refused."""
        if label is None or label == '':
            label = self.default_label
        if label not in self.specs:
            raise KeyError(f'Unknown model {str(label)[:60]!r}; choose one of {self.labels}.')
        return self.specs[label]

    def _build(self, spec):
        from ovseg.apis import OVSegInferencer
        return OVSegInferencer(spec.config, checkpoint=spec.checkpoint, device=self.device,
                               random_weights=self.random_weights, max_pixels=self.max_pixels,
                               cfg_options=spec.cfg_options or None)

    def get(self, label=None):
        """The inferencer of ``label`` (built now if needed; the least recently used is dropped)."""
        spec = self.spec(label)
        with self._lock:
            if spec.label in self._loaded:
                self._loaded.move_to_end(spec.label)
                return self._loaded[spec.label]
            inferencer = self._builder(spec)
            self._loaded[spec.label] = inferencer
            while len(self._loaded) > self.max_loaded:
                dropped, _ = self._loaded.popitem(last=False)
                self._extras.pop(dropped, None)
            return inferencer

    def extra(self, label, key, factory):
        """Per-model companion object (e.g. an interactive prompter), dropped with the model."""
        spec = self.spec(label)
        with self._lock:
            store = self._extras.setdefault(spec.label, {})
            if key not in store:
                store[key] = factory()
            return store[key]
