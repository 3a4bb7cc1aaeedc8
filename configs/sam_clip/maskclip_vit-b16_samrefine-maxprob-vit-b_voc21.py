# MaskCLIP ViT-B/16 (OpenAI) + SAM ViT-B refinement on PASCAL VOC 21 with ovseg's rule for rejected
# regions (failed_rule='max_prob': where the input's top probability beats the refined one, the input
# prediction is restored, so the prediction is the argmax of the scores everywhere). Otherwise as
# maskclip_vit-b16_samrefine-vit-b_voc21.py, which follows Trident's own rule.
_base_ = [
    '../_base_/models/maskclip_vit-b16.py', '../_base_/models/sam_vit-b.py',
    '../_base_/datasets/voc21.py', '../_base_/default_runtime.py'
]
# MaskCLIP has no objectness score: the background class is scored with stuff names (as in configs/maskclip;
# the list equals ovseg.text.BACKGROUND_STUFF).
background_stuff = [
    'sky', 'wall', 'tree', 'wood', 'grass', 'road', 'sea', 'river', 'mountain', 'sands', 'desk',
    'bed', 'building', 'cloud', 'lamp', 'door', 'window', 'wardrobe', 'ceiling', 'shelf', 'curtain',
    'stair', 'floor', 'hill', 'rail', 'fence',
]
model = dict(
    vocabulary='maskclip/voc21', background=dict(names=background_stuff),
    sam_refiner=dict(_base_.sam_refiner, failed_rule='max_prob'))
