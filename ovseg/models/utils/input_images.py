"""The images a segmentor was given, back from its normalised input batch."""
import torch


def images_from_inputs(inputs, data_preprocessor=None):
    """Undo ``SegDataPreProcessor`` normalisation: (B, 3, H, W) -> (B, H, W, 3) uint8 RGB.

    mmcv loads BGR images, so the inputs are RGB exactly when the preprocessor converted channels.
    """
    x = inputs.float()
    if data_preprocessor is not None and getattr(data_preprocessor, '_enable_normalize', False):
        x = x * data_preprocessor.std.to(x) + data_preprocessor.mean.to(x)
    if data_preprocessor is not None and not getattr(data_preprocessor, 'channel_conversion', True):
        x = x.flip(1)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
