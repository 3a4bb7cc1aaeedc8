"""How many model calls the demo runs at once: memory readings, the startup bound and a request gate.

The bound of ``--max-concurrent auto`` (computed once, at startup, on the CPU)::

    peak   = peak memory of one warm-up request (the default model, a --max-side square image, alone)
    budget = 0.8 x available memory after that request
             - (max_loaded - 1) x the default model's memory (room for the other models it may load)
    N      = min(CPU cores, budget // (2 x peak)), at least 1

The factor 2 covers vocabularies up to ``--max-classes`` (the warm-up uses 3 classes) and allocator
variance; the CPU cap is there because a CPU-bound model call gains nothing from sharing a core with
another one (it only finishes later). A peak is the growth of the process's peak resident size (VmHWM,
reset through ``/proc/self/clear_refs``) over a call that runs alone; available memory is MemAvailable,
or the cgroup's limit minus its usage when lower.

:class:`RequestGate` applies the bound: at most N calls run at once; a mode or model used for the
first time runs alone while its peak is measured, and afterwards a call starts only while twice the
peaks of the calls in flight plus its own fit in the budget (a call always runs when it is alone).
"""
import os
import threading
from contextlib import contextmanager
from pathlib import Path

# Share of the available memory the demo may plan with (the rest: the OS, Gradio, fragmentation).
MEMORY_SHARE = 0.8
# A call reserves this multiple of its measured peak (vocabularies larger than the warm-up's,
# allocator variance).
PEAK_MARGIN = 2.0
GB = 1024 ** 3


def _proc_status_kb(field, pid='self'):
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith(field + ':'):
            return int(line.split()[1])
    raise OSError(f'no {field} in /proc/{pid}/status')


def rss_bytes():
    """Resident size of this process (bytes)."""
    return _proc_status_kb('VmRSS') * 1024


def _cgroup_room():
    """Bytes left under this process's cgroup v2 (or v1) memory limit, or None without one."""
    candidates = []
    try:
        for line in Path('/proc/self/cgroup').read_text().splitlines():
            if line.startswith('0::'):
                candidates.append(Path('/sys/fs/cgroup' + line[3:].rstrip('/')))
    except OSError:
        pass
    candidates.append(Path('/sys/fs/cgroup'))
    for folder in candidates:
        for limit_name, usage_name in (('memory.max', 'memory.current'),
                                       ('memory/memory.limit_in_bytes', 'memory/memory.usage_in_bytes')):
            try:
                limit = (folder / limit_name).read_text().strip()
                usage = int((folder / usage_name).read_text())
            except (OSError, ValueError):
                continue
            if limit.isdigit() and int(limit) < 1 << 60:
                return max(0, int(limit) - usage)
            return None
    return None


def available_memory():
    """Bytes this process can still allocate (MemAvailable, or the cgroup's room when lower)."""
    for line in Path('/proc/meminfo').read_text().splitlines():
        if line.startswith('MemAvailable:'):
            free = int(line.split()[1]) * 1024
            break
    else:
        raise OSError('no MemAvailable in /proc/meminfo')
    room = _cgroup_room()
    return free if room is None else min(free, room)


def cpu_cores():
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def memory_measurable():
    """True where peaks can be measured (Linux: VmHWM can be reset) and memory read."""
    try:
        PeakMeter.reset()
        _proc_status_kb('VmHWM')
        available_memory()
    except (OSError, ValueError):
        return False
    return True


class PeakMeter:
    """``with PeakMeter() as meter: ...`` then ``meter.peak``: growth of the peak resident size over
    the block (bytes). Meaningful when nothing else in the process allocates meanwhile."""

    @staticmethod
    def reset():
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # reset VmHWM to the current resident size

    def __enter__(self):
        self.reset()
        self.start = rss_bytes()
        self.peak = None
        return self

    def __exit__(self, *exc):
        self.peak = max(0, _proc_status_kb('VmHWM') * 1024 - self.start)
        return False


def plan_concurrency(peak, available, model_bytes, max_loaded, cores):
    """The ``--max-concurrent auto`` bound (see the module docstring).

    Args:
        peak (int): measured peak of one request (bytes).
        available (int): available memory after the warm-up (bytes).
        model_bytes (int): memory of the default model (bytes).
        max_loaded (int): models the pool keeps loaded at once.
        cores (int): CPU cores.

    Returns:
        tuple[int, int, str]: (N, budget in bytes, a sentence explaining N).
    """
    budget = max(0, int(MEMORY_SHARE * available - max(0, max_loaded - 1) * model_bytes))
    by_memory = int(budget // max(1.0, PEAK_MARGIN * peak))
    count = max(1, min(cores, by_memory))
    why = (f'{count} request(s) at once (auto: min({cores} CPU cores, {by_memory} by memory = '
           f'{budget / GB:.1f} GB budget / {PEAK_MARGIN:g} x {peak / GB:.2f} GB measured per request); '
           f'--max-concurrent N overrides)')
    return count, budget, why


class RequestGate:
    """Admits model calls: at most ``max_in_flight`` at once and, with a ``budget``, only while
    their reserved memory fits (see the module docstring).

    Args:
        max_in_flight (int): calls running at once. Default 1.
        budget (int, optional): bytes the calls in flight may reserve; None: no memory check (and
            no measuring).
    """

    def __init__(self, max_in_flight=1, budget=None):
        self.max_in_flight = max(1, int(max_in_flight))
        self.budget = budget
        self.peaks = {}
        self.description = f'{self.max_in_flight} request(s) at once'
        self._reserved = []  # one entry (bytes) per call in flight
        self._alone = False  # a call that must run alone is running
        self._waiting_alone = 0
        self._cond = threading.Condition()

    @property
    def in_flight(self):
        return len(self._reserved)

    def configure(self, max_in_flight, budget, description):
        """Set the bound (after the warm-up measured the default model)."""
        with self._cond:
            self.max_in_flight, self.budget = max(1, int(max_in_flight)), budget
            self.description = description
            self._cond.notify_all()

    def _cost(self, key):
        return int(PEAK_MARGIN * self.peaks[key])

    def _may_start(self, key, alone):
        if self._alone:
            return False
        if alone:
            return not self._reserved
        if self._waiting_alone or len(self._reserved) >= self.max_in_flight:
            return False
        if self.budget is None or not self._reserved:
            return True
        return sum(self._reserved) + self._cost(key) <= self.budget

    @contextmanager
    def _admitted(self, key, alone, on_wait):
        with self._cond:
            self._waiting_alone += alone
            try:
                told = False
                while not self._may_start(key, alone):
                    if on_wait is not None and not told:
                        on_wait(len(self._reserved))
                        told = True
                    self._cond.wait()
            finally:
                self._waiting_alone -= alone
            self._alone = alone
            cost = 0 if alone or key not in self.peaks else self._cost(key)
            self._reserved.append(cost)
        try:
            yield
        finally:
            with self._cond:
                self._reserved.remove(cost)
                self._alone = False
                self._cond.notify_all()

    @contextmanager
    def slot(self, key, on_wait=None):
        """Run one model call of ``key`` (e.g. ``('text', model label)``).

        The first call of a key runs alone and its peak is measured (with a budget); ``on_wait(n)``
        is called once if the call has to wait (n: calls in flight).
        """
        measure = self.budget is not None and key not in self.peaks
        with self._admitted(key, measure, on_wait):
            if not measure:
                yield
                return
            with PeakMeter() as meter:
                yield
            self.peaks[key] = meter.peak

    @contextmanager
    def alone(self, on_wait=None):
        """Run a block with no model call in flight (loading a model)."""
        with self._admitted(None, True, on_wait):
            yield
