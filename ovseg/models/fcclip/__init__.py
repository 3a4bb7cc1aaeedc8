"""FC-CLIP: pixel decoder, masked-attention decoder, in/out-of-vocabulary classifiers, ensemble, segmentor."""
from ovseg.models.losses import mask_set_criterion, point_mask_matcher  # noqa: F401  registers the loss parts

from .ensemble import geometric_ensemble, seen_class_mask
from .in_vocab_classifier import FCCLIPInVocabClassifier
from .out_vocab_classifier import FCCLIPOutVocabClassifier
from .pixel_decoder import FCCLIPPixelDecoder
from .segmentor import FCCLIPSegmentor
from .transformer_decoder import FCCLIPTransformerDecoder

__all__ = ['FCCLIPInVocabClassifier', 'FCCLIPOutVocabClassifier', 'FCCLIPPixelDecoder', 'FCCLIPSegmentor',
           'FCCLIPTransformerDecoder', 'geometric_ensemble', 'seen_class_mask']
