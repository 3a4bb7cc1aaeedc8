# SAM 3 (Carion et al. 2025) text prompts through transformers' Sam3Model, fused into per-class score maps
# by SegEarth-OV3's training-free rule (Li et al. 2025, arXiv:2512.08730; earth-insights/SegEarth-OV-3):
# for each prompt max(max over queries with score > confidence_threshold of score x sigmoid(mask),
# sigmoid(semantic head)) x presence score; a class takes the max over its prompts
# (ovseg/models/segmentors/sam3_segmentor.py). Weights: the Hugging Face id 'facebook/sam3' (gated: accept
# the licence on the hub, then `hf auth login`) or a local folder written by save_pretrained, e.g.
#     --cfg-options model.sam3.pretrained=/data/sam3            (safetensors only)
# SAM 3 resizes every image to 1008 x 1008 itself: leaf configs feed the original image (no Resize).
model = dict(
    type='SAM3Segmentor',
    # RGB, no normalisation: the segmentor hands uint8 images to SAM 3's own image processor.
    data_preprocessor=dict(type='SegDataPreProcessor', bgr_to_rgb=True, pad_val=0, seg_pad_val=255),
    sam3=dict(type='SAM3TextPrompter', pretrained='facebook/sam3'),
    vocabulary=None,
    confidence_threshold=0.5,  # SAM 3's and SegEarth-OV3's default; leaf configs set the per-dataset value
    use_instances=True, use_semantic=True, use_presence=True,
    # one prompt per class: the vocabulary's first name (mmseg's class name); 'all' prompts every synonym
    synonyms='first',
    prompt_batch=4,  # prompts per forward: ~0.6 GB of activations each in fp32 on a CPU; raise it on a GPU
    return_instances=True,
    test_cfg=dict(mode='whole'),
    precision='fp32')
