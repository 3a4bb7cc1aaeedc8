"""AnoVL's domain-aware state prompts (plain data, no torch).

AnoVL (Deng et al., 2023) describes a class with 7 normal and 7 anomalous states, each put into 66
templates chosen by the **domain** of the class: objects get the "industrial photo", "industrial
image" and "manufacturing image" families, textures (MVTec's carpet, leather, grid, tile, wood) the
"industrial photo", "textural photo" and "surface picture" families. Each family is the same 22
sentence frames around its own noun phrase. A sentence is ``template.format(state.format(name))``,
listed **template-major** (for each template, every state), as the reference's
``encode_text_with_prompt_ensemble`` does; the reference also maps the VisA names 'macaroni1' and
'macaroni2' to 'macaroni'.
"""
from types import MappingProxyType

ANOVL_NORMAL_STATES = ('normal {}', 'flawless {}', 'perfect {}', 'unblemished {}', '{} without flaw',
                       '{} without defect', '{} without damage')
ANOVL_ANOMALOUS_STATES = ('damaged {}', 'abnormal {}', 'imperfect {}', 'blemished {}', '{} with flaw',
                          '{} with defect', '{} with damage')
ANOVL_TEXTURES = ('carpet', 'leather', 'grid', 'tile', 'wood')
ANOVL_CLASS_ALIASES = MappingProxyType({'macaroni1': 'macaroni', 'macaroni2': 'macaroni'})

# The 22 sentence frames of every family; {kind} is the family's noun phrase, '{{}}' the state.
_FRAMES = (
    'a cropped {kind} of the {{}}', 'a cropped {kind} of a {{}}',
    'a close-up {kind} of a {{}}', 'a close-up {kind} of the {{}}',
    'a bright {kind} of a {{}}', 'a bright {kind} of the {{}}',
    'a dark {kind} of the {{}}', 'a dark {kind} of a {{}}',
    'a jpeg corrupted {kind} of a {{}}', 'a jpeg corrupted {kind} of the {{}}',
    'a blurry {kind} of the {{}}', 'a blurry {kind} of a {{}}',
    '{article} {kind} of a {{}}', '{article} {kind} of the {{}}',
    '{article} {kind} of a small {{}}', '{article} {kind} of the small {{}}',
    '{article} {kind} of a large {{}}', '{article} {kind} of the large {{}}',
    '{article} {kind} of the {{}} for visual inspection', '{article} {kind} of a {{}} for visual inspection',
    '{article} {kind} of the {{}} for anomaly detection', '{article} {kind} of a {{}} for anomaly detection',
)

# Template families: the noun phrase of each (its bare frames start with "an" before a vowel).
ANOVL_FAMILIES = MappingProxyType({
    'industrial_photo': 'industrial photo',
    'industrial_image': 'industrial image',
    'manufacturing_image': 'manufacturing image',
    'textural_photo': 'textural photo',
    'surface_picture': 'surface picture',
})
ANOVL_OBJECT_FAMILIES = ('industrial_photo', 'industrial_image', 'manufacturing_image')
ANOVL_TEXTURE_FAMILIES = ('industrial_photo', 'textural_photo', 'surface_picture')


def family_templates(family):
    """The 22 templates (each with one '{}') of a family name from :data:`ANOVL_FAMILIES`."""
    if family not in ANOVL_FAMILIES:
        raise KeyError(f'unknown AnoVL template family {family!r}; known: {sorted(ANOVL_FAMILIES)}')
    kind = ANOVL_FAMILIES[family]
    article = 'an' if kind[0] in 'aeiou' else 'a'
    return tuple(frame.format(kind=kind, article=article) for frame in _FRAMES)


def anovl_templates(texture, object_families=ANOVL_OBJECT_FAMILIES, texture_families=ANOVL_TEXTURE_FAMILIES):
    """The 66 templates of a domain: ``texture`` True for textures, False for objects."""
    families = texture_families if texture else object_families
    return tuple(t for family in families for t in family_templates(family))


def anovl_prompts(class_name, textures=ANOVL_TEXTURES, aliases=ANOVL_CLASS_ALIASES,
                  normal=ANOVL_NORMAL_STATES, anomalous=ANOVL_ANOMALOUS_STATES):
    """(normal sentences, anomalous sentences) of one class, template-major.

    Args:
        class_name (str): category name, e.g. 'bottle' or 'carpet'; the domain is 'texture' when it
            is in ``textures`` (checked before the alias is applied, as in the reference).
        textures (Sequence[str]): texture category names. Default MVTec's five.
        aliases (Mapping[str, str]): name substitutions inside the sentences. Default macaroni1/2.
        normal (Sequence[str]): normal states, each with one '{}'.
        anomalous (Sequence[str]): anomalous states.

    Returns:
        tuple[list[str], list[str]]: 66 x 7 = 462 sentences per state with the defaults.
    """
    templates = anovl_templates(class_name in set(textures))
    name = aliases.get(class_name, class_name)

    def build(states):
        return [t.format(s.format(name)) for t in templates for s in states]
    return build(normal), build(anomalous)
