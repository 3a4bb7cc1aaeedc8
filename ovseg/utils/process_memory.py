"""This process's resident memory, from Linux's ``/proc`` (used by the benchmark tools).

``reset_peak_rss()`` resets the kernel's peak-RSS counter (VmHWM) so that the peak read afterwards covers
only what runs in between; ``rss_mib('VmRSS')`` / ``rss_mib('VmHWM')`` read the current / peak resident
set in MiB. Elsewhere (no ``/proc``) the reset returns False and the reads return NaN.
"""


def reset_peak_rss():
    """Reset this process's peak RSS (VmHWM) to its current RSS; False where that is not possible."""
    try:  # Linux: writing 5 to clear_refs resets the peak resident set size
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def rss_mib(field='VmRSS'):
    """A memory field of ``/proc/self/status`` ('VmRSS', 'VmHWM', ...) in MiB; NaN where unavailable."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float('nan')
