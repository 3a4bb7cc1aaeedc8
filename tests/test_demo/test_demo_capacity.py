"""Requests under load: the --max-concurrent bound, the request gate, weight-sharing inferencer copies."""
import threading
import time

import numpy as np
import pytest

from demo.app import capacity
from demo.app.capacity import GB, RequestGate, plan_concurrency
from demo.app.models import ModelPool, ModelSpec, share_weights_copy
from demo.app.services import DemoServices


def test_plan_concurrency_follows_the_stated_formula():
    # budget = 0.8 x 10 GB - (2 - 1) x 1 GB = 7 GB; 7 GB // (2 x 1 GB) = 3 requests by memory
    count, budget, why = plan_concurrency(GB, 10 * GB, GB, max_loaded=2, cores=8)
    assert (count, budget) == (3, int(7 * GB))
    assert 'min(8 CPU cores, 3 by memory' in why and '--max-concurrent N overrides' in why
    assert plan_concurrency(GB, 10 * GB, GB, max_loaded=2, cores=2)[0] == 2  # the CPU cap
    assert plan_concurrency(GB, 10 * GB, GB, max_loaded=4, cores=8)[0] == 2  # room for 3 more models
    assert plan_concurrency(8 * GB, 4 * GB, GB, max_loaded=2, cores=8)[0] == 1  # always one


def test_memory_readings():
    if not capacity.memory_measurable():
        pytest.skip('peak memory cannot be measured here (no /proc/self/clear_refs)')
    assert capacity.available_memory() > 0 and capacity.rss_bytes() > 0
    with capacity.PeakMeter() as meter:
        block = np.ones(64 * 1024 * 1024, np.uint8)  # 64 MiB, touched
        del block
    assert 60 * 2 ** 20 <= meter.peak < 2 * GB


def _run_in_threads(count, target):
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return threads


def test_gate_runs_calls_together_while_their_peaks_fit():
    gate = RequestGate(max_in_flight=3, budget=100)
    gate.peaks.update({'small': 20, 'large': 45})  # reserved: 2 x the peak
    running, most = [], [0]
    lock = threading.Lock()

    def call(key):
        with gate.slot(key):
            with lock:
                running.append(key)
                most[0] = max(most[0], len(running))
            time.sleep(0.2)
            with lock:
                running.remove(key)

    _run_in_threads(3, lambda i: call('small'))  # 3 x 40 > 100: two at a time
    assert most[0] == 2
    most[0] = 0
    _run_in_threads(2, lambda i: call('large'))  # 90 + 90 > 100: one at a time
    assert most[0] == 1 and gate.in_flight == 0


def test_gate_measures_a_new_key_alone_and_waits_for_it():
    if not capacity.memory_measurable():
        pytest.skip('peak memory cannot be measured here')
    gate = RequestGate(max_in_flight=4, budget=1 << 40)
    gate.peaks['known'] = 1
    events, waits = [], []

    def known(i):
        time.sleep(0.05 * i)
        with gate.slot('known', on_wait=waits.append):
            events.append(('start', 'known'))
            time.sleep(0.1)
            events.append(('end', 'known'))

    def new(_):
        time.sleep(0.03)
        with gate.slot('new', on_wait=waits.append):
            events.append(('start', 'new'))
            block = np.ones(32 * 1024 * 1024, np.uint8)
            time.sleep(0.1)
            del block
            events.append(('end', 'new'))

    threads = [threading.Thread(target=known, args=(i,)) for i in range(3)]
    threads.append(threading.Thread(target=new, args=(0,)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    start = events.index(('start', 'new'))
    assert events[start + 1] == ('end', 'new')  # nothing ran beside the measured call
    assert gate.peaks['new'] >= 30 * 2 ** 20 and waits  # measured; someone was told to wait


def _blocking_builder(barrier):
    class Stub:  # the barrier lives in the class: copies of an instance share it
        def __call__(self, rgb, vocabulary=None, **kwargs):
            barrier.wait(timeout=20)  # fails (BrokenBarrierError) unless both calls run at once
            mask = np.zeros(rgb.shape[:2], np.int64)
            return dict(overlay=rgb, class_names=list(vocabulary),
                        shares={name: float(i == 0) for i, name in enumerate(vocabulary)}, mask=mask)

    return lambda spec: Stub()


def test_two_requests_of_one_model_run_at_once(demo_files):
    barrier = threading.Barrier(2)
    pool = ModelPool([ModelSpec('stub', 'unused.py')], builder=_blocking_builder(barrier))
    services = DemoServices(pool, gate=RequestGate(2))
    results = [None, None]

    def request(i):
        results[i] = services.segment_text(str(demo_files['image']), f'cat, dog{i}')

    _run_in_threads(2, request)
    assert all(r is not None and r[0].shape == (96, 128, 3) for r in results)
    assert not barrier.broken and len(pool._idle['stub']) == 2  # two inferencers, kept for reuse


def test_weight_sharing_copies_are_independent_inferencers(services, demo_files):
    template = services.pool.get()
    copy = share_weights_copy(template)
    assert copy is not template and copy.model is not template.model
    for mine, theirs in zip(copy.model.parameters(), template.model.parameters()):
        assert mine is theirs  # the weights exist once
    rgb = np.random.default_rng(1).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    expected = template(rgb, vocabulary=['cat', 'dog', 'grass'])['mask']
    copy.set_vocabulary(['sky', 'tree'])
    assert template.class_names == ['cat', 'dog', 'grass']  # the vocabulary is the copy's own
    np.testing.assert_array_equal(copy(rgb, vocabulary=['cat', 'dog', 'grass'])['mask'], expected)


def test_the_server_states_and_applies_its_bound(gradio_app_module, demo_files, capsys):
    from demo.app.ui import MODEL_QUEUE, build_app
    args = gradio_app_module.parse_args(
        ['--config', str(demo_files['segmentor']), '--random-weights', '--anomaly-config', 'none',
         '--no-examples', '--max-side', '256'])
    services = gradio_app_module.build_services(args)
    gate = services.gate
    if capacity.memory_measurable():
        assert ('text', 'tiny_segmentor') in gate.peaks and gate.budget > 0
        assert services.max_concurrent == capacity.cpu_cores()  # a tiny model: the CPU cap decides
        assert f'{services.max_concurrent} request(s) at once (auto: min(' in gate.description
        assert 'warm-up 256x256 px' in gate.description
    else:
        assert services.max_concurrent == 1 and 'cannot be measured' in gate.description
    fixed = gradio_app_module.build_services(gradio_app_module.parse_args(
        ['--config', str(demo_files['segmentor']), '--random-weights', '--anomaly-config', 'none',
         '--max-concurrent', '3']))
    assert fixed.max_concurrent == 3 and fixed.gate.budget is None and not fixed.gate.peaks
    app = build_app(fixed, examples=False)
    limits = {fn.api_name: fn.concurrency_limit for fn in app.fns.values()
              if fn.concurrency_id == MODEL_QUEUE}
    assert limits == {'segment': 3, 'segment_prompts': 3, 'detect_anomaly': 3}
    with pytest.raises(SystemExit):
        gradio_app_module.parse_args(['--max-concurrent', '0'])
    assert "expected 'auto' or a number >= 1" in capsys.readouterr().err
