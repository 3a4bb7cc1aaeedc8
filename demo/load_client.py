"""Send a burst of concurrent requests to a running web demo and report the latencies.

Examples::

    python demo/gradio_app.py --random-weights &                       # the server, in another shell
    python demo/load_client.py http://127.0.0.1:7860/ --requests 20    # the bundled astronaut photo

Prints the median and worst latency (submit to result), when each client first heard from the server
(its place in the queue, or its start), the queue ranks seen and how many requests were seen running at
once. Needs only ``gradio_client``. Exit codes: 0 every request succeeded; 1 some failed.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

DEFAULT_IMAGE = Path(__file__).resolve().parent / 'assets' / 'astronaut.jpg'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('url', help='the demo, e.g. http://127.0.0.1:7860/')
    parser.add_argument('--image', default=str(DEFAULT_IMAGE), help='image to upload (default: astronaut)')
    parser.add_argument('--vocab', default='person, flag, rocket, wall', help='vocabulary of every request')
    parser.add_argument('--model', default=None, help="model label (default: the server's first model)")
    parser.add_argument('--requests', type=int, default=20, help='requests sent at once (default 20)')
    parser.add_argument('--timeout', type=float, default=1800, help='seconds to wait for each result')
    return parser.parse_args(argv)


def burst(client, image, vocabulary, model=None, count=20, timeout=1800, poll=0.05):
    """Submit ``count`` /segment requests at once and watch them.

    Args:
        vocabulary (str | Sequence[str]): the vocabulary of every request, or vocabularies used in turn.

    Returns:
        dict: ``latencies`` (s, submit to result, per request), ``first_answers`` (s, submit to the
        first status from the server), ``ranks`` (queue ranks seen), ``most_running`` (requests seen
        running at once; polled, so it can exceed the server's bound by one while a result is in
        transit), ``outputs`` (per request).
    """
    from gradio_client import handle_file
    from gradio_client.utils import Status
    quiet = (Status.STARTING, Status.JOINING_QUEUE)
    running_codes = (Status.PROCESSING, Status.PROGRESS)
    done, answered, ranks, most, submitted, jobs = {}, {}, set(), 0, [], []
    for i in range(count):
        submitted.append(time.monotonic())
        vocab = vocabulary if isinstance(vocabulary, str) else vocabulary[i % len(vocabulary)]
        args = (handle_file(str(image)), vocab) + ((model,) if model else ())
        jobs.append(client.submit(*args, api_name='/segment',
                                  result_callbacks=[lambda *out, i=i: done.setdefault(i, time.monotonic())]))
    deadline = time.monotonic() + timeout
    while not all(job.done() for job in jobs) and time.monotonic() < deadline:
        now, running = time.monotonic(), 0
        for i, job in enumerate(jobs):
            status = job.status()
            if status.code not in quiet:
                answered.setdefault(i, now - submitted[i])
            if status.code == Status.IN_QUEUE and status.rank is not None:
                ranks.add(status.rank)
            running += status.code in running_codes
        most = max(most, running)
        time.sleep(poll)
    outputs = [job.result(timeout=max(1.0, deadline - time.monotonic())) for job in jobs]
    latencies = [done.get(i, time.monotonic()) - submitted[i] for i in range(count)]
    return dict(latencies=latencies, first_answers=[answered.get(i, latencies[i]) for i in range(count)],
                ranks=ranks, most_running=most, outputs=outputs)


def summary(stats):
    """One line: median and worst latency, first answers, ranks, most running."""
    lat, first = stats['latencies'], stats['first_answers']
    return (f'{len(lat)} requests: latency median {statistics.median(lat):.1f} s, worst {max(lat):.1f} s; '
            f'first answer from the server: worst {max(first):.1f} s; queue ranks seen up to '
            f'{max(stats["ranks"], default="-")}; at most {stats["most_running"]} seen running at once')


def main(argv=None):
    args = parse_args(argv)
    if not Path(args.image).is_file():
        print(f'error: image {args.image}: no such file.', file=sys.stderr)
        return 1
    from gradio_client import Client
    client = Client(args.url, verbose=False)
    try:
        stats = burst(client, args.image, args.vocab, args.model, args.requests, args.timeout)
    except Exception as err:  # noqa: BLE001  a failed request: say which error
        print(f'error: a request failed: {type(err).__name__}: {err}', file=sys.stderr)
        return 1
    print(summary(stats))
    return 0


if __name__ == '__main__':
    sys.exit(main())
