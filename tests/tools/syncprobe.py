"""How long a disk takes to sync, minute by minute, without eventbus: is a stall in a durable
soak the server's or the disk's? (issue 12)

`python3 tests/tools/syncprobe.py DIR [SECONDS]` appends 20 KiB to a file in DIR and syncs it
(`fdatasync`) up to 1,000 times a second, as the durable writer appends its commits to the WAL,
and prints one line per minute: syncs, p50, p99, p99.9 and the longest sync, and how many took
over 100 ms. With `--checkpoint`, a second thread also writes 1 MiB of 1 KiB pages at random
offsets of another file and syncs it every 20 ms, as the checkpointer copies the WAL into the
database file. Put DIR on the disk the database would use; it is left with the two files.
"""

from __future__ import annotations

import argparse
import os
import random
import threading
import time

APPEND = 20 * 1024
PAGE = 1024


def checkpointer(path: str, stop: threading.Event) -> None:
    """Writes 1 MiB at random page offsets and syncs, every 20 ms, until stopped."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    page, pages = os.urandom(PAGE), 0
    while not stop.is_set():
        for _ in range(1024):
            n = random.randrange(0, pages + 64)
            os.pwrite(fd, page, n * PAGE)
            pages = max(pages, n + 1)
        os.fsync(fd)
        stop.wait(0.02)
    os.close(fd)


def report(minute: int, syncs: list[float]) -> None:
    s = sorted(syncs)
    n = len(s)

    def ms(q: float) -> float:
        return s[min(n - 1, int(n * q))] * 1e3

    slow = sum(1 for x in s if x > 0.1)
    print(
        f"minute {minute}: syncs {n}  p50 {ms(0.5):.2f} ms  p99 {ms(0.99):.2f} ms  "
        f"p99.9 {ms(0.999):.2f} ms  max {s[-1] * 1e3:.1f} ms  over 100 ms: {slow}",
        flush=True,
    )


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("dir")
    args.add_argument("seconds", nargs="?", type=float, default=300.0)
    args.add_argument("--checkpoint", action="store_true", help="also write and sync a second file")
    a = args.parse_args()
    stop = threading.Event()
    if a.checkpoint:
        threading.Thread(target=checkpointer, args=(os.path.join(a.dir, "db"), stop), daemon=True).start()
    fd = os.open(os.path.join(a.dir, "wal"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    chunk = os.urandom(APPEND)
    start = time.monotonic()
    syncs: list[float] = []
    minute, offset = 1, 0
    while (now := time.monotonic()) - start < a.seconds:
        os.pwrite(fd, chunk, offset)
        # Like the WAL, the file is written over from its start once it reached 16 MiB.
        offset = 0 if offset > 16 << 20 else offset + APPEND
        os.fdatasync(fd)
        done = time.monotonic()
        syncs.append(done - now)
        if done - start >= minute * 60:
            report(minute, syncs)
            syncs, minute = [], minute + 1
        time.sleep(max(0.0, 0.001 - (time.monotonic() - now)))
    if syncs:
        report(minute, syncs)
    stop.set()
    os.close(fd)


if __name__ == "__main__":
    main()
