"""Time the text side: a vocabulary x templates through ``OVTextClassifier``, cold and cached.

Usage::

    python tools/analysis/text_encoding_benchmark.py [--model ViT-B-16] [--pretrained TAG]
        [--vocabulary ade847] [--templates imagenet80] [--precision bf16] [--batch-size 256]
        [--full-context-sample 256] [--threads N] [--json OUT]

Steps, each timed with wall and CPU time:

1. ``first``: the first encoding (cache miss): every prompt tokenised, batches sorted by length and
   trimmed to their longest prompt, the text tower under the chosen precision, template means, the
   result written to the disk cache (a temporary folder unless ``--cache-dir``).
2. ``repeat (memory)``: the same vocabulary again on the same classifier (in-memory LRU).
3. ``repeat (disk)``: a new classifier on the same cache folder, as a new process would see it (the
   text-weight fingerprint is computed, then the cached file is read).
4. ``full context`` (``--full-context-sample N``): the first N prompts through open_clip's own
   ``encode_text`` at the full context (77 tokens) in float32, extrapolated to all prompts: what the
   first encoding would cost without trimming and bf16. The maximum difference between the trimmed
   embeddings (this precision) and the full-context float32 ones on the sample is reported too.

Without ``--pretrained`` the tower has random weights drawn from ``--seed`` (same cost as trained ones;
nothing is downloaded).
"""
import argparse
import json
import os
import platform
import tempfile
import time

# torch and ovseg are imported by the functions that use them: --help answers without the model stack.


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Benchmark the text-embedding step.')
    parser.add_argument('--model', default='ViT-B-16', help="open_clip architecture ('tiny': the tests' tiny CLIP). Default ViT-B-16")
    parser.add_argument('--pretrained', help='open_clip pretrained tag (default: random weights)')
    parser.add_argument('--vocabulary', default='ade847', help='built-in name or a .txt file')
    parser.add_argument('--templates', default='imagenet80', help='template set. Default imagenet80')
    parser.add_argument('--precision', default='bf16', choices=['fp32', 'bf16'])
    parser.add_argument('--batch-size', type=int, default=256, help='prompts per call. Default 256')
    parser.add_argument('--cache-dir', help='disk cache folder (default: a temporary one, removed)')
    parser.add_argument('--full-context-sample', type=int, default=256,
                        help='prompts timed at the full context in fp32 (0: skip). Default 256')
    parser.add_argument('--seed', type=int, default=0, help='random-weights seed. Default 0')
    parser.add_argument('--threads', type=int, help='torch CPU threads (default: torch default)')
    parser.add_argument('--json', help='write the results to this JSON file')
    return parser.parse_args(argv)


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, dict(wall_s=time.perf_counter() - wall, cpu_s=time.process_time() - cpu)


def _full_context(backbone, prompts, reference_precision_emb):
    """fp32 open_clip encode_text at the full context on ``prompts``; time and max difference."""
    import torch
    import torch.nn.functional as F
    tokens = backbone.tokenizer(prompts).long()
    with torch.no_grad():
        full, timing = _timed(lambda: F.normalize(backbone.clip.encode_text(tokens).float(), dim=-1))
    timing['max_abs_diff_vs_trimmed'] = float((full - reference_precision_emb).abs().max())
    timing['min_cosine_vs_trimmed'] = float((full * reference_precision_emb).sum(-1).min())
    return timing


def run(args, cache_dir):
    import torch

    from ovseg.models.backbones import OpenCLIPBackbone
    from ovseg.models.text_encoders import OVTextClassifier
    from ovseg.text import load_vocabulary
    torch.manual_seed(args.seed)
    if args.model == 'tiny':  # the tests' tiny CLIP (ovseg.testing)
        from ovseg.testing import tiny_clip_arch
        backbone = OpenCLIPBackbone(arch=tiny_clip_arch('vit')).eval()
    else:
        backbone = OpenCLIPBackbone(model_name=args.model, pretrained=args.pretrained).eval()
    vocab = load_vocabulary(args.vocabulary)
    make = lambda: OVTextClassifier(templates=args.templates, batch_size=args.batch_size,  # noqa: E731
                                    cache_dir=cache_dir, precision=args.precision)
    classifier = make()
    prompts = [t.format(s) for s in vocab.synonyms for t in classifier.templates]
    tokens = backbone.tokenizer(prompts).long()
    lengths = (tokens.argmax(dim=-1) + 1).float()
    result = dict(model=args.model, pretrained=args.pretrained or 'random weights',
                  vocabulary=str(args.vocabulary), classes=len(vocab), synonyms=len(vocab.synonyms),
                  templates=len(classifier.templates), prompts=len(prompts),
                  context=int(tokens.shape[1]), mean_tokens=float(lengths.mean()),
                  max_tokens=int(lengths.max()), precision=args.precision,
                  batch_size=args.batch_size, threads=torch.get_num_threads(),
                  torch=torch.__version__, machine=platform.processor() or platform.machine(),
                  cpus=os.cpu_count())
    first, result['first'] = _timed(lambda: classifier(backbone, vocab))
    _, result['repeat_memory'] = _timed(lambda: classifier(backbone, vocab))
    again, result['repeat_disk'] = _timed(lambda: make()(backbone, vocab))
    result['disk_equals_first'] = bool(torch.equal(again.embeddings, first.embeddings))
    sample = prompts[:args.full_context_sample]
    if sample:
        trimmed = classifier.encode_prompts(backbone, sample)
        timing = _full_context(backbone, sample, trimmed)
        timing['prompts'] = len(sample)
        timing['extrapolated_all_s'] = timing['wall_s'] * len(prompts) / len(sample)
        result['full_context_fp32'] = timing
    return result


def format_report(r):
    lines = [f"{r['model']} ({r['pretrained']}), {r['vocabulary']}: {r['classes']} classes, "
             f"{r['synonyms']} synonyms x {r['templates']} templates = {r['prompts']} prompts "
             f"(mean {r['mean_tokens']:.1f} / max {r['max_tokens']} of {r['context']} tokens), "
             f"{r['precision']}, batch {r['batch_size']}, {r['threads']} threads",
             '| step | wall s | CPU s |', '|---|---|---|']
    for key, name in (('first', 'first encoding (trimmed, cache miss)'),
                      ('repeat_memory', 'repeat, same classifier (memory)'),
                      ('repeat_disk', 'repeat, new classifier (disk cache)')):
        lines.append(f"| {name} | {r[key]['wall_s']:.3f} | {r[key]['cpu_s']:.3f} |")
    full = r.get('full_context_fp32')
    if full:
        lines.append(f"| full context fp32, {full['prompts']} prompts -> all (extrapolated) | "
                     f"{full['wall_s']:.2f} -> {full['extrapolated_all_s']:.0f} | {full['cpu_s']:.2f} |")
        lines.append(f"\nTrimmed {r['precision']} vs full-context fp32 on the sample: max |diff| "
                     f"{full['max_abs_diff_vs_trimmed']:.2e}, min cosine "
                     f"{full['min_cosine_vs_trimmed']:.6f}")
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    if args.cache_dir:
        result = run(args, args.cache_dir)
    else:
        with tempfile.TemporaryDirectory(prefix='ovseg-text-bench-') as cache_dir:
            result = run(args, cache_dir)
    print(format_report(result))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == '__main__':
    main()
