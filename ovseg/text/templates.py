"""Prompt templates for CLIP text classifiers: plain data and one lookup function (no torch).

Every template holds exactly one ``{}``, the place of the class name. Template sets:

- ``imagenet80``: CLIP's 80 ImageNet templates, in the order of CLIP's zero-shot notebook (the
  order MaskCLIP and CLIP-DINOiser use).
- ``maskclip85``: ``imagenet80`` followed by MaskCLIP's 5 scene templates
  (``tools/maskclip_utils/prompt_engineering.py``).
- ``vild14``: the 14 ViLD templates, in the order FC-CLIP uses them.
- ``single``: ``'a photo of a {}.'`` alone.
"""
from types import MappingProxyType

IMAGENET80 = (
    'a bad photo of a {}.',
    'a photo of many {}.',
    'a sculpture of a {}.',
    'a photo of the hard to see {}.',
    'a low resolution photo of the {}.',
    'a rendering of a {}.',
    'graffiti of a {}.',
    'a bad photo of the {}.',
    'a cropped photo of the {}.',
    'a tattoo of a {}.',
    'the embroidered {}.',
    'a photo of a hard to see {}.',
    'a bright photo of a {}.',
    'a photo of a clean {}.',
    'a photo of a dirty {}.',
    'a dark photo of the {}.',
    'a drawing of a {}.',
    'a photo of my {}.',
    'the plastic {}.',
    'a photo of the cool {}.',
    'a close-up photo of a {}.',
    'a black and white photo of the {}.',
    'a painting of the {}.',
    'a painting of a {}.',
    'a pixelated photo of the {}.',
    'a sculpture of the {}.',
    'a bright photo of the {}.',
    'a cropped photo of a {}.',
    'a plastic {}.',
    'a photo of the dirty {}.',
    'a jpeg corrupted photo of a {}.',
    'a blurry photo of the {}.',
    'a photo of the {}.',
    'a good photo of the {}.',
    'a rendering of the {}.',
    'a {} in a video game.',
    'a photo of one {}.',
    'a doodle of a {}.',
    'a close-up photo of the {}.',
    'a photo of a {}.',
    'the origami {}.',
    'the {} in a video game.',
    'a sketch of a {}.',
    'a doodle of the {}.',
    'a origami {}.',
    'a low resolution photo of a {}.',
    'the toy {}.',
    'a rendition of the {}.',
    'a photo of the clean {}.',
    'a photo of a large {}.',
    'a rendition of a {}.',
    'a photo of a nice {}.',
    'a photo of a weird {}.',
    'a blurry photo of a {}.',
    'a cartoon {}.',
    'art of a {}.',
    'a sketch of the {}.',
    'a embroidered {}.',
    'a pixelated photo of a {}.',
    'itap of the {}.',
    'a jpeg corrupted photo of the {}.',
    'a good photo of a {}.',
    'a plushie {}.',
    'a photo of the nice {}.',
    'a photo of the small {}.',
    'a photo of the weird {}.',
    'the cartoon {}.',
    'art of the {}.',
    'a drawing of the {}.',
    'a photo of the large {}.',
    'a black and white photo of a {}.',
    'the plushie {}.',
    'a dark photo of a {}.',
    'itap of a {}.',
    'graffiti of the {}.',
    'a toy {}.',
    'itap of my {}.',
    'a photo of a cool {}.',
    'a photo of a small {}.',
    'a tattoo of the {}.',
)

VILD14 = (
    'a photo of a {}.',
    'This is a photo of a {}',
    'There is a {} in the scene',
    'There is the {} in the scene',
    'a photo of a {} in the scene',
    'a photo of a small {}.',
    'a photo of a medium {}.',
    'a photo of a large {}.',
    'This is a photo of a small {}.',
    'This is a photo of a medium {}.',
    'This is a photo of a large {}.',
    'There is a small {} in the scene.',
    'There is a medium {} in the scene.',
    'There is a large {} in the scene.',
)

MASKCLIP_SCENE5 = (
    'there is a {} in the scene.',
    'there is the {} in the scene.',
    'this is a {} in the scene.',
    'this is the {} in the scene.',
    'this is one {} in the scene.',
)

TEMPLATES = MappingProxyType({
    'imagenet80': IMAGENET80,
    'maskclip85': IMAGENET80 + MASKCLIP_SCENE5,
    'vild14': VILD14,
    'single': ('a photo of a {}.',),
})
"""Read-only mapping: template-set name -> tuple of templates."""

TEMPLATE_SOURCES = MappingProxyType({
    'imagenet80': 'openai/CLIP notebooks/Prompt_Engineering_for_ImageNet.ipynb imagenet_templates; CLIP-DINOiser '
                  'uses them in this order (wysoczanska/clip_dinoiser models/maskclip/utils/prompt_templates.py, '
                  'use_templates: True in configs/maskclip.yaml; the list as recorded in the maskclip_dinoiser '
                  'parity manifest, which a test compares)',
    'maskclip85': 'chongzhou96/MaskCLIP tools/maskclip_utils/prompt_engineering.py prompt_templates (read from the '
                  'fork 1ucky40nc3/MaskCLIP@7043f0ee39f2ddcea007b6075693c5078b6b0394: imagenet80 + 5 scene templates)',
    'vild14': 'bytedance/fc-clip@a8dc32c862dfc1fe55dcf9287090e080d9ee5f50 fcclip/fcclip.py VILD_PROMPT (compared with '
              'the fcclip parity manifest by a test)',
    'single': "CLIP's default prompt 'a photo of a {}.'",
})
"""Read-only mapping: template-set name -> where the set comes from (for protocol cards)."""


def _check_template(template):
    """Raise ValueError unless ``template`` is a string with one ``{}`` that formats cleanly."""
    if not isinstance(template, str):
        raise ValueError(f'a template must be a string, got {type(template).__name__}: '
                         f'{template!r}')
    if template.count('{}') != 1:
        raise ValueError("a template must contain exactly one '{}' (the class name), "
                         f'got {template!r}')
    try:
        template.format('x')
    except (IndexError, KeyError, ValueError) as err:
        raise ValueError(f'template {template!r} does not format with one class name: '
                         f'{err}') from err


def get_templates(spec):
    """Resolve a template specification to a tuple of templates.

    Args:
        spec (str | Sequence[str]): a template-set name from :data:`TEMPLATES`
            (case-insensitive), one template string containing ``{}``, or a sequence of templates.

    Returns:
        tuple[str, ...]: the templates, each with exactly one ``{}``.

    Raises:
        ValueError: unknown name (the message lists the known names), empty sequence, or a
            template without exactly one ``{}`` (the message quotes it).
    """
    if isinstance(spec, str):
        if '{' in spec or '}' in spec:
            spec = (spec,)
        else:
            key = spec.strip().lower()
            if key not in TEMPLATES:
                raise ValueError(f'unknown template set {spec!r}; known: '
                                 f'{", ".join(sorted(TEMPLATES))} '
                                 "(or pass a list of templates such as ['a photo of a {}.'])")
            return TEMPLATES[key]
    try:
        templates = tuple(spec)
    except TypeError:
        raise ValueError(f'templates must be a name or a sequence of strings, '
                         f'got {type(spec).__name__}') from None
    if not templates:
        raise ValueError('empty template list: give at least one template, '
                         "e.g. ['a photo of a {}.']")
    for template in templates:
        _check_template(template)
    return templates
