"""State prompts for zero-shot anomaly detection: normal / anomalous states x templates (plain data).

A prompt is ``template.format(state.format(class_name))``. Prompt lists are built **state-major** (for
each state, every template), the order WinCLIP's reference (anomalib ``create_prompt_ensemble``) uses;
the order matters only for float summation, not for the averaged embedding.

Sets:

- ``winclip``: WinCLIP's compositional prompt ensemble: 7 normal states, 4 anomalous states and 21
  templates (the list holds "a jpeg corrupted photo of the {}." twice, kept as in the reference, so that
  template weighs double in the mean).
- ``anomalyclip``: the two object-agnostic states of AnomalyCLIP ("object" / "damaged object" are the
  class-free words its learnable prompts end with) with the single template ``'{}'``.

Other methods (AnoVL's domain-aware states, learned prompts) add sets with the same structure.
"""
from types import MappingProxyType

WINCLIP_NORMAL_STATES = (
    '{}',
    'flawless {}',
    'perfect {}',
    'unblemished {}',
    '{} without flaw',
    '{} without defect',
    '{} without damage',
)

WINCLIP_ANOMALOUS_STATES = (
    'damaged {}',
    '{} with flaw',
    '{} with defect',
    '{} with damage',
)

WINCLIP_TEMPLATES = (
    'a cropped photo of the {}.',
    'a close-up photo of a {}.',
    'a close-up photo of the {}.',
    'a bright photo of a {}.',
    'a bright photo of the {}.',
    'a dark photo of the {}.',
    'a dark photo of a {}.',
    'a jpeg corrupted photo of the {}.',
    'a jpeg corrupted photo of the {}.',
    'a blurry photo of the {}.',
    'a blurry photo of a {}.',
    'a photo of a {}.',
    'a photo of the {}.',
    'a photo of a small {}.',
    'a photo of the small {}.',
    'a photo of a large {}.',
    'a photo of the large {}.',
    'a photo of the {} for visual inspection.',
    'a photo of a {} for visual inspection.',
    'a photo of the {} for anomaly detection.',
    'a photo of a {} for anomaly detection.',
)

PROMPT_SETS = MappingProxyType({
    'winclip': MappingProxyType(dict(normal=WINCLIP_NORMAL_STATES, anomalous=WINCLIP_ANOMALOUS_STATES,
                                     templates=WINCLIP_TEMPLATES)),
    'anomalyclip': MappingProxyType(dict(normal=('{}',), anomalous=('damaged {}',), templates=('{}',))),
})


def get_prompt_set(spec):
    """A prompt set by name, or a dict with 'normal', 'anomalous' and 'templates' (each holding '{}').

    Returns:
        dict: tuples under 'normal', 'anomalous' and 'templates'.

    Raises:
        KeyError: unknown set name.
        ValueError: a missing key or an entry without exactly one '{}'.
    """
    if isinstance(spec, str):
        if spec not in PROMPT_SETS:
            raise KeyError(f'unknown anomaly prompt set {spec!r}; known: {sorted(PROMPT_SETS)}')
        spec = PROMPT_SETS[spec]
    out = {}
    for key in ('normal', 'anomalous', 'templates'):
        if key not in spec:
            raise ValueError(f"an anomaly prompt set needs 'normal', 'anomalous' and 'templates'; {key!r} "
                             f'is missing')
        entries = (spec[key],) if isinstance(spec[key], str) else tuple(spec[key])
        bad = [e for e in entries if e.count('{}') != 1]
        if bad or not entries:
            raise ValueError(f"every {key} entry must hold exactly one '{{}}'; got {bad or entries}")
        out[key] = entries
    return out


def state_prompts(class_name, prompt_set='winclip'):
    """(normal prompts, anomalous prompts) for one class name, state-major.

    Args:
        class_name (str): object or texture name, e.g. 'bottle' (MVTec uses the category name; the
            WinCLIP reference substitutes 'object' when none is given).
        prompt_set (str | dict): see :func:`get_prompt_set`. Default 'winclip'.

    Returns:
        tuple[list[str], list[str]]: e.g. 7 x 21 = 147 normal and 4 x 21 = 84 anomalous for 'winclip'.
    """
    prompts = get_prompt_set(prompt_set)
    build = (lambda states: [t.format(s.format(class_name)) for s in states for t in prompts['templates']])
    return build(prompts['normal']), build(prompts['anomalous'])
