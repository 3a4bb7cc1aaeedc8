"""MaskCLIP dense features from an open_clip ``ModifiedResNet``.

The attention pool's value and output projections become 1x1 convolutions applied at every position;
query and key are dropped (METHODS.md, MaskCLIP). For MaskCLIP+ key smoothing the keys are the attention
pool's key projection as a 1x1 convolution on the last stage (no positional embedding), as MaskCLIP's
ResNet head computes them (``k_proj`` of ``MaskClipHead``, chongzhou96/MaskCLIP).
"""
import torch
import torch.nn.functional as F

from ovseg.models.utils.dense_features import DenseFeatures

STAGES = ('layer1', 'layer2', 'layer3', 'layer4')


def _as_conv(linear, x):
    return F.conv2d(x, linear.weight[:, :, None, None], linear.bias)


def _attnpool_global(pool, x):
    """The attention pool on any grid size (its positional embedding resized bicubically)."""
    b, c, h, w = x.shape
    pos = pool.positional_embedding
    side = int(round((pos.shape[0] - 1) ** 0.5))
    if (h, w) != (side, side):
        grid = pos[1:].reshape(1, side, side, c).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(h, w), mode='bicubic', align_corners=False)
        pos = torch.cat([pos[:1], grid.permute(0, 2, 3, 1).reshape(h * w, c)])
    tokens = x.flatten(2).permute(2, 0, 1)
    tokens = torch.cat([tokens.mean(dim=0, keepdim=True), tokens]) + pos[:, None].to(x.dtype)
    out, _ = F.multi_head_attention_forward(
        query=tokens[:1], key=tokens, value=tokens, embed_dim_to_check=c, num_heads=pool.num_heads,
        q_proj_weight=pool.q_proj.weight, k_proj_weight=pool.k_proj.weight,
        v_proj_weight=pool.v_proj.weight, in_proj_weight=None,
        in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
        bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.,
        out_proj_weight=pool.c_proj.weight, out_proj_bias=pool.c_proj.bias,
        use_separate_proj_weight=True, training=False, need_weights=False)
    return out[0]


def resnet_dense_forward(visual, x, token_layers=(), with_global=False):
    """Run an open_clip ModifiedResNet and return :class:`DenseFeatures`.

    Args:
        visual (ModifiedResNet): open_clip vision tower.
        x (Tensor): (B, 3, H, W) normalised images, H and W multiples of 32.
        token_layers (Sequence[str]): stage outputs to return, any of 'layer1'..'layer4', and
            'last_keys' (the attention pool's keys at every position, MaskCLIP+ key smoothing).
        with_global (bool): also compute the attention-pooled image embedding. Default False.
    """
    unknown = set(token_layers) - set(STAGES) - {'last_keys'}
    if unknown:
        raise ValueError(f"ResNet token layers must be among {STAGES + ('last_keys',)}, got {sorted(unknown)}.")
    tokens = {}
    x = visual.stem(x)
    for name in STAGES:
        x = getattr(visual, name)(x)
        if name in token_layers:
            tokens[name] = x
    pool = visual.attnpool
    if 'last_keys' in token_layers:
        tokens['last_keys'] = _as_conv(pool.k_proj, x)
    dense = _as_conv(pool.c_proj, _as_conv(pool.v_proj, x))
    global_feat = _attnpool_global(pool, x) if with_global else None
    return DenseFeatures(dense=dense, tokens=tokens, global_feat=global_feat)
