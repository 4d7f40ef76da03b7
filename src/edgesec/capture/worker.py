"""Capture worker process: rings -> pipeline, status lines on stdout.

Run as ``python -m edgesec.capture.worker --options JSON --interface IF ...``
(the :class:`~edgesec.capture.service.CaptureService` does this). It opens
one TPACKET_V3 ring per interface, polls them, feeds every batch to the
middleware pipeline and prints one JSON status line per second (and a
``{"ready": true}`` line once capturing, or ``{"error": ...}`` and exit 2).
SIGTERM/SIGINT stop it cleanly: the last batches are stored and the
middlewares closed. A batch the pipeline fails to store is dropped and
counted as an own drop; the capture keeps running.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import select
import signal
import sys
import time
from typing import Any

from edgesec.capture.bpf import BpfError
from edgesec.capture.options import CaptureOptions
from edgesec.capture.pipeline import Pipeline
from edgesec.capture.ring import CaptureError, Ring

log = logging.getLogger("edgesec.capture.worker")


class Worker:
    """The capture loop over several rings."""

    def __init__(self, options: CaptureOptions, interfaces: list[str]) -> None:
        self.options = options
        self.rings: list[Ring] = []
        try:
            for ifname in interfaces:
                self.rings.append(Ring(
                    ifname, filter_expr=options.filter, promiscuous=options.promiscuous,
                    immediate=options.immediate, buffer_timeout=options.buffer_timeout,
                    buffer_size=options.buffer_size))
            self.pipeline = Pipeline(options, options.middlewares)
        except BaseException:
            self.close_rings()
            raise
        self.stop = False
        self.packets = 0
        self.own_drops = 0
        self.batches = 0

    def close_rings(self) -> None:
        """Close every ring."""
        for ring in self.rings:
            ring.close()

    def status(self) -> dict[str, Any]:
        """Counters for the status line."""
        kernel_packets = kernel_drops = 0
        per_if = {}
        for ring in self.rings:
            kp, kd = ring.stats()
            kernel_packets += kp
            kernel_drops += kd
            per_if[ring.ifname] = {"kernel_packets": kp, "kernel_drops": kd}
        return {"pid": os.getpid(), "packets": self.packets, "kernel_packets": kernel_packets,
                "kernel_drops": kernel_drops, "own_drops": self.own_drops,
                "batches": self.batches, "middleware_errors": self.pipeline.errors,
                "interfaces": per_if, **self.pipeline.ctx.stats}

    def _feed(self, ring: Ring, packets: list) -> None:
        size = self.options.batch_size
        for i in range(0, len(packets), size):
            chunk = packets[i:i + size]
            try:
                self.pipeline.feed(ring.ifname, chunk)
                self.packets += len(chunk)
                self.batches += 1
            except Exception:
                self.own_drops += len(chunk)
                log.exception("dropping a batch of %d packets", len(chunk))
                with contextlib.suppress(Exception):  # no transaction open
                    self.pipeline.db.execute("ROLLBACK")

    def run(self, emit) -> None:
        """Capture until :attr:`stop`; ``emit(dict)`` writes a status line."""
        poller = select.poll()
        for ring in self.rings:
            poller.register(ring.fileno(), select.POLLIN | select.POLLERR)
        next_status = time.monotonic() + 1.0
        while not self.stop:
            busy = False
            for ring in self.rings:  # round robin: one burst per ring per turn
                packets = ring.read(4)
                if packets:
                    busy = True
                    self._feed(ring, packets)
            now = time.monotonic()
            if now >= next_status:
                emit(self.status())
                next_status = now + 1.0
            if not busy:
                with contextlib.suppress(InterruptedError):
                    poller.poll(100)
        for ring in self.rings:
            self._feed(ring, ring.read(ring.nblocks))

    def close(self) -> None:
        """Close the pipeline and the rings."""
        try:
            self.pipeline.close()
        finally:
            self.close_rings()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the worker process."""
    ap = argparse.ArgumentParser(prog="edgesec.capture.worker")
    ap.add_argument("--options", required=True, help="CaptureOptions as JSON")
    ap.add_argument("--interface", action="append", required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s capture: %(message)s")

    def emit(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    # The control plane wins CPU contention; the ring buffers the burst meanwhile.
    with contextlib.suppress(OSError):
        os.nice(5)
    try:
        worker = Worker(CaptureOptions.from_json(args.options), args.interface)
    except (CaptureError, BpfError, OSError) as exc:
        emit({"error": str(exc)})
        return 2

    def on_signal(signum: int, frame: object) -> None:
        worker.stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    emit({"ready": True, "pid": os.getpid(), "interfaces": args.interface})
    try:
        worker.run(emit)
    finally:
        status = worker.status()
        worker.close()
        emit({**status, "final": True})
    return 0


if __name__ == "__main__":
    sys.exit(main())
