"""This host's sustained memory read bandwidth: the CPU's peak for the decode roofline.

Measured once per host and cached by its fingerprint (CPU model, logical cores, memory size),
STREAM-like: one thread per usable core sums its own slice of a float64 array far larger than
any cache (numpy releases the GIL, so the slices are read at once); bandwidth = bytes read ÷
wall time of the slowest thread, the best of several trials (the least disturbed one).
A read-only kernel, because decode mostly reads (weights and KV cache). Datasheet figures
are used for GPUs instead (hardware.memory_bandwidth_gb_s).
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from harness.measure.metadata import cpu_model, usable_cpus
from harness.results.locks import exclusive
from harness.results.result import write_json_atomic

ARRAY_BYTES = 512 * 2**20  # far beyond any L3 cache of a CPU this runs on
TRIALS = 7
VERSION = 1  # bump when the kernel or its sizes change: a cached figure is measured again


@dataclass(frozen=True, slots=True)
class Bandwidth:
    bytes_s: float
    source: str  # how it was obtained, for the record
    host: str  # the fingerprint it belongs to


def fingerprint() -> str:
    facts = [cpu_model(), usable_cpus(), psutil.virtual_memory().total, platform.machine()]
    blob = json.dumps([*facts, VERSION])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def measure_read(threads: int, array_bytes: int = ARRAY_BYTES, trials: int = TRIALS) -> float:
    """Bytes per second summing ``array_bytes`` of float64 over ``threads`` threads (best)."""
    import numpy as np

    data = np.ones(array_bytes // 8, dtype=np.float64)
    parts = np.array_split(data, threads)
    best = 0.0
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(np.sum, parts))  # first touch and warm-up
        for _ in range(trials):
            start = time.perf_counter()
            list(pool.map(np.sum, parts))
            best = max(best, data.nbytes / (time.perf_counter() - start))
    return best


def host_bandwidth(cache_dir: Path) -> Bandwidth:
    """The cached figure for this host, measured now if there is none (under a lock, so two
    workers never measure at once and disturb each other)."""
    host = fingerprint()
    path = cache_dir / "bandwidth" / f"{host}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(path.with_suffix(".lock")):
        if path.is_file():
            return Bandwidth(**json.loads(path.read_text()))
        threads = usable_cpus()
        value = measure_read(threads)
        source = (
            f"measured: numpy float64 sum over {ARRAY_BYTES >> 20} MiB, {threads} threads, "
            f"best of {TRIALS}, on {cpu_model()} ({time.strftime('%Y-%m-%d')})"
        )
        found = Bandwidth(value, source, host)
        write_json_atomic(path, asdict(found))
        return found
