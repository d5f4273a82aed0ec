"""One module per command; shared command-side helpers live here."""

from __future__ import annotations

import os


def default_workers() -> int:
    """Decoding workers: one per available core, at most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    return min(cores, 8)


def open_detector(model: str | None, device: str, precision: str, what: str = "scores"):
    """(device, precision, detector) chosen the same way for scan, evaluate and explain; warns (on stderr)
    when the detector is the untrained placeholder."""
    from ganscan.console import warn
    from ganscan.detectors.registry import load_detector
    from ganscan.engine.device import choose_precision, configure_threads, resolve_device

    dev = resolve_device(device)
    prec = choose_precision(dev, precision)
    configure_threads()
    detector = load_detector(model)
    if detector.placeholder:
        warn(f"model {detector.label!r} is an UNTRAINED PLACEHOLDER: its {what} mean nothing yet")
    return dev, prec, detector
