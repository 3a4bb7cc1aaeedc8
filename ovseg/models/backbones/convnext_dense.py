"""Stage maps and the dense CLIP map from an open_clip timm ConvNeXt tower (FC-CLIP's backbone)."""
from ovseg.models.utils.dense_features import DenseFeatures

STAGE_NAMES = ('res2', 'res3', 'res4', 'res5')


def convnext_project(visual, feats):
    """Map stage-4 features to the joint space through the CLIP head, as FC-CLIP does for pooled masks.

    Args:
        visual (TimmModel): open_clip timm vision tower with a ConvNeXt trunk.
        feats (Tensor): (N, C) stage-4 features (e.g. mask-pooled), C = trunk.num_features.

    Returns:
        Tensor: (N, E) embeddings (not normalised).
    """
    n, c = feats.shape
    x = visual.trunk.head(feats.reshape(n, c, 1, 1))
    return visual.head(x)


def convnext_dense_forward(visual, x, token_layers=STAGE_NAMES, with_global=False):
    """Run a ConvNeXt CLIP tower and return :class:`DenseFeatures`.

    ``tokens`` holds the requested stage maps ('res2'..'res5', strides 4..32) and 'clip_vis_dense' (stage 4
    after the trunk's ``norm_pre``); ``dense`` is the CLIP head applied at every position.
    """
    unknown = set(token_layers) - set(STAGE_NAMES) - {'clip_vis_dense'}
    if unknown:
        raise ValueError(f'ConvNeXt token layers must be among {STAGE_NAMES + ("clip_vis_dense",)}, '
                         f'got {sorted(unknown)}.')
    trunk = visual.trunk
    x = trunk.stem(x)
    tokens = {}
    for name, stage in zip(STAGE_NAMES, trunk.stages):
        x = stage(x)
        if name in token_layers:
            tokens[name] = x
    x = trunk.norm_pre(x)
    tokens['clip_vis_dense'] = x
    b, c, h, w = x.shape
    dense = convnext_project(visual, x.permute(0, 2, 3, 1).reshape(-1, c))
    dense = dense.reshape(b, h, w, -1).permute(0, 3, 1, 2)
    global_feat = visual.head(trunk.head(x)) if with_global else None
    return DenseFeatures(dense=dense, tokens=tokens, global_feat=global_feat)
