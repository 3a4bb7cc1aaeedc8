"""The command-line server under load: bursts of 20 concurrent requests (slow).

Reports the median and worst latency (submit to result) and checks them against a bound stated in terms
of the latency of one request alone, measured on the same machine just before: a burst of 20 needs
about 20 single-request times of CPU however the server shares it, so

    worst  <= 3 x 20 x t1 + 10 s        median <= 3 x 10 x t1 + 10 s

where 3x allows the machine's load to change between the single requests and the bursts (other jobs on
a shared 2-core machine) and 10 s covers 20 clients connecting and uploading. Every client must hear
from the server (its place in the queue, or its start) within 10 s, and with a bound of N >= 2 requests
at once (printed by the server) at least two requests must be seen running at the same time.
"""
import re
import statistics
import time

import pytest

from demo_test_utils import rss_mb

pytest.importorskip('gradio_client')
from gradio_client import Client, handle_file  # noqa: E402

from demo.load_client import burst  # noqa: E402

BURST = 20
LOAD_FACTOR = 3.0
CONNECT_S = 10.0
FIRST_ANSWER_S = 10.0


def _check(result):
    overlay, table, status = result
    assert overlay.endswith('.png') and 'ovseg-shares' in table and '1000x1000' in status


def _single_latency(client, image, count=3):
    times = []
    for i in range(count):
        started = time.monotonic()
        _check(client.predict(handle_file(str(image)), f'cat, dog, grass{i}', 'tiny_segmentor',
                              api_name='/segment'))
        times.append(time.monotonic() - started)
    return statistics.median(times)


def _bound(log):
    match = re.search(r'Serving (\d+) request\(s\) at once', log.read_text())
    assert match, f'the server did not state its bound:\n{log.read_text()[-2000:]}'
    return int(match.group(1))


@pytest.mark.slow
def test_cli_server_twenty_concurrent_requests(cli_server, demo_files):
    """Bursts of 20 concurrent megapixel requests to the command-line server all succeed within the
    latency bound of the module docstring, waiting clients hear their place in the queue, and the
    server's memory stays bounded: the lower of the last two readings is < 90 MB above the reading
    after two warm-up bursts, where a leak of one working image (3 MB) per request would add at least
    120 MB (after the 40 requests of the third and fourth bursts) and 180 MB by the fifth. Readings
    swing by tens of MB and creep by up to ~20 MB per burst before levelling off (seen in clean CI
    runs: 1072, 1095, 1120, 1136, 1152 MB; locally 1015, 1034, 1042, 1055, 1055 MB)."""
    url, proc, log = cli_server
    client = Client(url, verbose=False)
    image = demo_files['megapixel']
    single = _single_latency(client, image)
    bound = _bound(log)
    sizes, latencies, answers, most, ranks = [], [], [], 0, set()
    for _ in range(5):
        stats = burst(client, image, [f'cat, dog, grass{i}' for i in range(5)], 'tiny_segmentor',
                      BURST, timeout=300)
        for result in stats['outputs']:
            _check(result)
        burst_latencies = stats['latencies']
        latencies += burst_latencies
        answers += stats['first_answers']
        most, ranks = max(most, stats['most_running']), ranks | stats['ranks']
        sizes.append(rss_mb(proc.pid))
        print(f'burst of {BURST}: median {statistics.median(burst_latencies):.1f} s, worst '
              f'{max(burst_latencies):.1f} s')
    median, worst = statistics.median(latencies), max(latencies)
    print(f'one request alone: {single:.2f} s; server bound: {bound} at once; most seen running: '
          f'{most}; latency over {len(latencies)} requests: median {median:.1f} s, worst {worst:.1f} s; '
          f'first answer: worst {max(answers):.1f} s; queue ranks seen: {sorted(ranks)[:3]}...'
          f'{max(ranks, default=None)}')
    print('server RSS after each burst of 20 (MB): ' + ', '.join(f'{s:.0f}' for s in sizes))
    serial = BURST * single
    assert worst <= LOAD_FACTOR * serial + CONNECT_S
    assert median <= LOAD_FACTOR * serial / 2 + CONNECT_S
    assert max(answers) <= FIRST_ANSWER_S
    assert ranks and max(ranks) >= 1  # waiting clients were told their place
    if bound >= 2:
        assert most >= 2
    assert min(sizes[-2:]) - sizes[1] < 90
