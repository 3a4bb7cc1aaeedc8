"""Benchmark every method config at its published test size and at a small size: one JSON + one table.

Usage::

    python tools/analysis/benchmark_suite.py [--configs GLOB ...] [--sizes small published]
        [--precision fp32 bf16] [--repeats N] [--warmup N] [--out-dir DIR] [--templates single|config]
        [--dedupe] [--small-side 224] [--batch N] [--image natural|random] [--threads N] [--device cpu|cuda]
        [--timeout S] [--cfg-options k=v ...]

Every config matching ``--configs`` (default ``configs/**/*.py`` without ``_base_``) runs through
``tools/analysis/benchmark.py`` once per size and precision, each run in a fresh Python process so that
its peak memory is its own, with random weights (``--random-weights``: nothing is read or downloaded).
Configs without a ``test_dataloader`` (training-only) are listed as skipped; a precision that the model
class does not take is listed as unsupported; a failed run is listed with its error. Nothing is left out
silently.

Sizes: ``published`` is the image the config's test pipeline gives the model (its ``Resize``, on a 4:3
reference image, 2:1 for Cityscapes) with the config's own ``test_cfg`` (e.g. 448x597, slide 448 / 224
for MaskCLIP / CLIP-DINOiser; 800x1067 for FC-CLIP; 240 / 518 squares for the anomaly methods);
``small`` scales it to a short side of ``--small-side`` (224). MuSc runs one category batch of
``--batch`` images (default max(8, its minimum)); its figures are per image.

``--templates single`` (the default here) gives every ``OVTextClassifier`` one template: with 80
templates the random-weight text encoding of a large vocabulary takes minutes on a CPU, and the
per-image cost does not depend on the templates (text embeddings are computed once, before timing, and
reported separately). ``--templates config`` keeps the configs' templates.

``--dedupe`` runs one config per group of configs whose model config (after stripping weights) and input
size are identical except for ``vocabulary`` / ``thing_classes``; the one with the largest vocabulary
runs and the table names the others.

Outputs in ``--out-dir`` (default ``work_dirs/benchmark_suite``): ``benchmark_suite.json`` (machine,
command, settings, every run's full figures), ``benchmark_suite.md`` (one table row per run: config,
size, precision, images/s, latency p50 / p90, CPU ms, peak MiB, text s, top stages) and ``logs/``
(each run's output). Both are rewritten after every run, so a stopped suite keeps what it measured.

Without ``pip install -e .`` run it as ``PYTHONPATH=. python tools/analysis/benchmark_suite.py ...``
(the runs get the repository on their path either way).
"""
import argparse
import copy
import datetime
import functools
import glob
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from mmengine.config import DictAction

REPO = Path(__file__).resolve().parents[2]
BENCHMARK = Path(__file__).resolve().with_name('benchmark.py')
VOCABULARY_KEYS = ('vocabulary', 'thing_classes')
SMALL_SIDE = 224  # benchmark.py's SMALL_SIDE (tests check that they agree)


@functools.lru_cache(maxsize=None)
def _load_benchmark():
    """tools/analysis/benchmark.py as a module (imported on first use: it imports the model stack)."""
    spec = importlib.util.spec_from_file_location('ovseg_tool_benchmark', BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module



def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Benchmark every method config (see the module docstring).')
    parser.add_argument('--configs', nargs='+', default=['configs/**/*.py'],
                        help='config files or globs (relative to the working directory or the repository)')
    parser.add_argument('--sizes', nargs='+', choices=['small', 'published'], default=['small', 'published'])
    parser.add_argument('--small-side', type=int, default=SMALL_SIDE, help='short side of small (224)')
    parser.add_argument('--precision', nargs='+', choices=['fp32', 'bf16', 'fp16'], default=['fp32'])
    parser.add_argument('--repeats', type=int, default=5, help='timed batches per run. Default 5')
    parser.add_argument('--warmup', type=int, default=1, help='untimed batches per run. Default 1')
    parser.add_argument('--batch', type=int, help='images per batch (default 1; MuSc max(8, its minimum))')
    parser.add_argument('--image', choices=['natural', 'random'], default='natural')
    parser.add_argument('--templates', default='single',
                        help="OVTextClassifier templates: 'single' (default), 'config' (keep) or a set name")
    parser.add_argument('--dedupe', action='store_true',
                        help='run one config per group identical except vocabulary (the table says so)')
    parser.add_argument('--threads', type=int, help='torch CPU threads of every run')
    parser.add_argument('--device', help='cpu or cuda (default: cuda when available)')
    parser.add_argument('--timeout', type=float, help='seconds per run before it is stopped (default none)')
    parser.add_argument('--out-dir', default='work_dirs/benchmark_suite')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='config overrides applied to every config')
    return parser.parse_args(argv)


def _cfg_options(raw):
    """'k=v' strings -> dict, parsed as benchmark.py parses them."""
    parser = argparse.ArgumentParser()
    parser.add_argument('--o', nargs='+', action=DictAction)
    return parser.parse_args(['--o', *raw]).o if raw else None


def find_configs(patterns):
    """Config paths matching the patterns (cwd first, else the repository), sorted, ``_base_`` excluded."""
    found = []
    for pattern in patterns:
        matches = glob.glob(pattern, recursive=True) or glob.glob(str(REPO / pattern), recursive=True)
        if not matches:
            raise SystemExit(f'No config matches {pattern!r}.')
        found += [m for m in matches if m.endswith('.py') and '_base_' not in Path(m).parts]
    return sorted(dict.fromkeys(os.path.normpath(p) for p in found))


def _vocabulary_size(model_cfg):
    from ovseg.text import load_vocabulary
    try:
        return len(load_vocabulary(model_cfg.get('vocabulary')))
    except Exception:  # anomaly models have no vocabulary
        return 0


def _model_key(model_cfg):
    model = copy.deepcopy(dict(model_cfg))
    for key in VOCABULARY_KEYS:
        model.pop(key, None)
    return json.dumps(model, sort_keys=True, default=str)


def plan_runs(args):
    """One entry per (config, size): ``status`` 'run', 'skipped', 'error' or 'deduplicated'."""
    options = _cfg_options(args.cfg_options)
    templates = None if args.templates == 'config' else args.templates
    entries = []
    for path in find_configs(args.configs):
        name = Path(path).stem
        try:
            cfg = _load_benchmark().load_config(path, options, random_weights=True, templates=templates)
        except Exception as exc:  # a broken config is reported, not fatal
            entries += [dict(config=path, name=name, size=s, status='error', error=repr(exc))
                        for s in args.sizes]
            continue
        if not cfg.get('test_dataloader'):
            entries += [dict(config=path, name=name, size=s, status='skipped',
                             note='training-only config (no test_dataloader)') for s in args.sizes]
            continue
        for size in args.sizes:
            entry = dict(config=path, name=name, size=size, model_type=cfg.model.get('type'),
                         status='run', vocabulary_size=_vocabulary_size(cfg.model))
            try:
                entry['shape'] = list(_load_benchmark().resolve_shape(cfg, size, None, args.small_side))
            except ValueError as exc:
                entry.update(status='error', error=str(exc))
            entry['key'] = (_model_key(cfg.model), tuple(entry.get('shape', ())))
            entries.append(entry)
    if args.dedupe:
        _dedupe(entries)
    for entry in entries:
        entry.pop('key', None)
    return entries


def _dedupe(entries):
    groups = {}
    for entry in entries:
        if entry['status'] == 'run':
            groups.setdefault(entry['key'], []).append(entry)
    for group in groups.values():
        if len(group) < 2:
            continue
        keep = max(group, key=lambda e: e['vocabulary_size'])  # the largest vocabulary: the slowest head
        keep['same_as_this'] = [e['name'] for e in group if e is not keep]
        for entry in group:
            if entry is not keep:
                sizes = (f" ({entry['vocabulary_size']} vs {keep['vocabulary_size']} classes)"
                         if keep['vocabulary_size'] else ' (object names and data only)')
                entry.update(status='deduplicated', represented_by=keep['name'],
                             note=f"same model and size as {keep['name']} except vocabulary{sizes}")


def _child_command(args, entry, precision, json_path):
    cmd = [sys.executable, str(BENCHMARK), entry['config'], '--size', entry['size'], '--small-side',
           str(args.small_side), '--random-weights', '--repeats', str(args.repeats), '--warmup',
           str(args.warmup), '--precision', precision, '--image', args.image, '--json', str(json_path)]
    if args.templates != 'config':
        cmd += ['--templates', args.templates]
    for flag, value in (('--batch', args.batch), ('--threads', args.threads), ('--device', args.device)):
        if value is not None:
            cmd += [flag, str(value)]
    if args.cfg_options:
        cmd += ['--cfg-options', *args.cfg_options]
    return cmd


def run_one(args, entry, precision, out_dir):
    """Run benchmark.py in a fresh process; return the entry's record for this precision."""
    record = dict(entry, precision=precision)
    if precision != 'fp32' and not _load_benchmark().supports_precision(entry['model_type']):
        record.update(status='unsupported', note=f"{entry['model_type']} has no precision option")
        return record
    stem = f"{Path(entry['config']).parent.name}__{entry['name']}_{entry['size']}_{precision}"
    json_path, log_path = out_dir / 'runs' / f'{stem}.json', out_dir / 'logs' / f'{stem}.log'
    json_path.unlink(missing_ok=True)  # a figure left by an earlier suite must not pass for this run's
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get('PYTHONPATH')]))
    env = dict(os.environ, PYTHONPATH=path)
    start = time.perf_counter()
    try:
        with open(log_path, 'w') as log:
            proc = subprocess.run(_child_command(args, entry, precision, json_path), stdout=log,
                                  stderr=subprocess.STDOUT, env=env, timeout=args.timeout)
        failed = proc.returncode != 0 or not json_path.exists()
        error = None if not failed else _tail(log_path)
    except subprocess.TimeoutExpired:
        failed, error = True, f'stopped after --timeout {args.timeout} s'
    record['wall_s'] = time.perf_counter() - start
    if failed:
        record.update(status='error', error=error)
    else:
        record.update(status='ok', result=json.loads(json_path.read_text()))
    return record


def _tail(path, lines=3):
    text = Path(path).read_text(errors='replace').strip().splitlines()
    return ' | '.join(text[-lines:]) if text else 'no output'


# ------------------------------------------------------------------------------------------ table
def _size_text(record):
    res = record.get('result') or {}
    shape = res.get('shape') or record.get('shape')
    text = f"{record['size']} {shape[0]}x{shape[1]}" if shape else record['size']
    if res.get('mode') == 'slide':
        text += f" slide {res.get('crop_size')}/{res.get('stride')}"
    if (res.get('batch') or 1) > 1:
        text += f" batch {res['batch']}"
    return text


def top_stages(stages, count=3):
    """'backbone 80%, upsample 9%, other 5%': the largest stages as shares of their sum."""
    if not stages:
        return ''
    total = sum(max(v, 0.0) for v in stages.values()) or 1.0
    ranked = sorted(stages.items(), key=lambda kv: -kv[1])[:count]
    return ', '.join(f'{k} {100.0 * v / total:.0f}%' for k, v in ranked)


def _note(record):
    notes = []
    if record.get('same_as_this'):
        notes.append('also stands for ' + ', '.join(record['same_as_this']) + ' (vocabulary differs)')
    for key in ('note', 'error'):
        if record.get(key):
            notes.append(str(record[key]).replace('|', '/'))
    counts = (record.get('result') or {}).get('counts_per_image') or {}
    notes += [f'{k} {v:.1f}/image' for k, v in counts.items()]
    return '; '.join(notes)


def _row(record):
    res = record.get('result') or {}

    def fig(key, fmt):
        return format(res[key], fmt) if res.get(key) is not None else ''

    latency = f"{fig('latency_ms_p50', '.1f')} / {fig('latency_ms_p90', '.1f')}" if res else ''
    cells = [record['name'], _size_text(record), record.get('precision', ''), record['status'],
             fig('images_per_s', '.3g'), latency, fig('cpu_ms_per_image', '.0f'),
             fig('peak_memory_mib', '.0f'),
             fig('text_encoding_s', '.1f'), top_stages(res.get('stages_ms')), _note(record)]
    return '| ' + ' | '.join(cells) + ' |'


def markdown_table(records):
    """One row per record: config, size, precision, status, figures, top stages, notes."""
    head = ('| config | size | precision | status | images/s | latency p50 / p90 (ms) | CPU ms | peak MiB '
            '| text s | top stages | notes |\n|---|---|---|---|---:|---:|---:|---:|---:|---|---|')
    return '\n'.join([head] + [_row(r) for r in records])


def write_outputs(out_dir, report):
    """benchmark_suite.json and benchmark_suite.md in ``out_dir``."""
    (out_dir / 'benchmark_suite.json').write_text(json.dumps(report, indent=2))
    m = report['machine']
    lines = ['# ovseg benchmark suite', '',
             f"Machine: {m['cpu']}, {m['cpu_count']} CPUs ({m.get('cpus_usable')} usable), "
             f"torch {m['torch']}, {report['settings']['threads']} threads"
             + (f", GPU {m['gpu']}" if m.get('gpu') else '') + f", device {report['settings']['device']}.",
             f"Command: `{report['command']}`", f"Finished: {report['finished']}", '',
             'Random weights; figures per image (CPU ms: CPU time of all threads, less sensitive than wall '
             'time to other load); stages: exclusive shares of the mean latency.', '',
             markdown_table(report['records']), '']
    (out_dir / 'benchmark_suite.md').write_text('\n'.join(lines))


def main(argv=None):
    """Plan; run each (config, size, precision) in a fresh process; write JSON and Markdown."""
    args = parse_args(argv)
    out_dir = Path(args.out_dir)
    (out_dir / 'runs').mkdir(parents=True, exist_ok=True)
    (out_dir / 'logs').mkdir(parents=True, exist_ok=True)
    import torch
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    settings = {k: v for k, v in vars(args).items()}
    settings.update(device=device, threads=args.threads or torch.get_num_threads())
    report = dict(machine=_load_benchmark().machine_info(device), settings=settings,
                  command=' '.join(['python', 'tools/analysis/benchmark_suite.py', *(argv or sys.argv[1:])]),
                  started=datetime.datetime.now().isoformat(timespec='seconds'), records=[])
    entries = plan_runs(args)
    todo = sum(len(args.precision) for e in entries if e['status'] == 'run')
    print(f"{len({e['config'] for e in entries})} configs, {todo} runs "
          f"({sum(e['status'] != 'run' for e in entries) * len(args.precision)} rows not run: "
          'skipped, deduplicated or failed to plan)', flush=True)
    done = 0
    for entry in entries:
        for precision in args.precision:
            if entry['status'] != 'run':
                report['records'].append(dict(entry, precision=precision))
                continue
            done += 1
            record = run_one(args, entry, precision, out_dir)
            report['records'].append(record)
            res = record.get('result') or {}
            print(f"[{done}/{todo}] {entry['name']} {entry['size']} {precision}: {record['status']}"
                  + (f", {res['images_per_s']:.3g} images/s" if res else '')
                  + f" ({record.get('wall_s', 0):.0f} s)", flush=True)
            report['finished'] = datetime.datetime.now().isoformat(timespec='seconds')
            write_outputs(out_dir, report)  # after every run: a stopped suite keeps what it measured
    report['finished'] = datetime.datetime.now().isoformat(timespec='seconds')
    write_outputs(out_dir, report)
    print(f"Wrote {out_dir / 'benchmark_suite.json'} and {out_dir / 'benchmark_suite.md'}")
    return report


if __name__ == '__main__':
    main()
