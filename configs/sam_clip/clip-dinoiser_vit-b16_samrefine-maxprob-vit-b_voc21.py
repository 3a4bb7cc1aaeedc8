# CLIP-DINOiser ViT-B/16 (LAION-2B) + SAM ViT-B refinement on PASCAL VOC 21 with ovseg's rule for rejected
# regions (failed_rule='max_prob': where the input's top probability beats the refined one, the input
# prediction is restored, so the prediction is the argmax of the scores everywhere). Otherwise as
# clip-dinoiser_vit-b16_samrefine-vit-b_voc21.py, which follows Trident's own rule.
_base_ = [
    '../_base_/models/clip_dinoiser_vit-b16.py', '../_base_/models/sam_vit-b.py',
    '../_base_/datasets/voc21.py', '../_base_/default_runtime.py'
]
model = dict(
    vocabulary='clip_dinoiser/voc21',
    sam_refiner=dict(_base_.sam_refiner, failed_rule='max_prob'))
