# CorrCLIP (Zhang et al., ICCV 2025; zdk258/CorrCLIP, folder CorrCLIPv1): frozen MetaCLIP ViT-B/16
# (open_clip ViT-B-16-quickgelu, metaclip_fullcc). Per window (336 / 112, zero-padded to multiples of 56):
# DINO ViT-B/8's L2-normalised q + k of the last block give the correlation values; mask proposals
# (merged by DBSCAN on region-mean DINO features) restrict their scope; softmax(4 * sim) replaces the last
# block's attention (no residual, no feed-forward); a spatial branch (mean of blocks 5..9) and a semantic
# branch (one mask-class token per merged region) are added after ln_post (weights 1.0 and 0.5).
# Logits per query are averaged over windows, resized to the original image, then softmax(40 * logits),
# max over a class's queries, prob_thd, and map correction (each proposal takes its mode).
# Proposals: CorrCLIP's released SAM 2 label maps (data/region_masks/<dataset>/<image>.npz), read by
# PrecomputedLabelMaps; leaf configs set the folder.
# Source: zdk258/CorrCLIP@103bc18 CorrCLIPv1/configs/base_config.py, corrclip_segmentor.py, open_clip/transformer.py.
data_preprocessor = dict(
    type='SegDataPreProcessor', mean=[122.771, 116.746, 104.094], std=[68.501, 66.632, 70.323],
    bgr_to_rgb=True, pad_val=0, seg_pad_val=255)
model = dict(
    type='CorrCLIPSegmentor',
    data_preprocessor=data_preprocessor,
    backbone=dict(type='CorrCLIPBackbone', model_name='ViT-B-16-quickgelu', pretrained='metaclip_fullcc',
                  alpha=1.0, beta=0.5),
    # dino_type='dino_vitb8' of base_config.py (torch.hub), here timm vit_base_patch8_224.dino
    vfm=dict(type='VFMBackbone', model_name='dino_vitb8', pretrained='dino', feature='q+k'),
    proposals=dict(type='PrecomputedLabelMaps', root='data/region_masks/voc'),
    text_classifier=dict(type='OVTextClassifier', templates='imagenet80'),
    vocabulary=None,
    logit_scale=40.0,
    prob_thd=0.0,
    tau=4.0,
    dbscan_eps=0.2,
    dbscan_min_samples=1,
    map_correction=True,
    pad_multiple=56,
    test_cfg=dict(mode='slide', crop_size=336, stride=112, window_batch=8))
