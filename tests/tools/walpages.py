"""Which b-trees the commits in a SQLite WAL wrote: a look at where the bytes written per event
go (issue 12).

Copy the database and its WAL while the server runs under load (`cp eb.db snap.db; cp
eb.db-wal snap.db-wal`), then `python3 tests/tools/walpages.py snap.db snap.db-wal`. It reads
the WAL's frames since its last restart (those with the header's salts), groups them by commit
and names each frame's page by the b-tree that owns it in the database file (SQLite's `dbstat`
table); a page the snapshot does not know yet is `new`.
"""

from __future__ import annotations

import collections
import sqlite3
import struct
import sys


def commits(wal: bytes) -> tuple[int, list[list[int]]]:
    """The page size and, per commit, the page numbers of its frames."""
    _magic, _version, page_size, _checkpoint, salt1, salt2, _c1, _c2 = struct.unpack(">8I", wal[:32])
    done: list[list[int]] = []
    frames: list[int] = []
    offset = 32
    while offset + 24 + page_size <= len(wal):
        page, commit, s1, s2, _, _ = struct.unpack(">6I", wal[offset : offset + 24])
        if (s1, s2) != (salt1, salt2):
            break
        frames.append(page)
        if commit:
            done.append(frames)
            frames = []
        offset += 24 + page_size
    return page_size, done


def main(db: str, wal_path: str) -> None:
    with open(wal_path, "rb") as f:
        page_size, found = commits(f.read())
    con = sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True)
    owner = {page: name for name, page in con.execute("SELECT name, pageno FROM dbstat")}
    per_tree: collections.Counter[str] = collections.Counter()
    for frames in found:
        per_tree.update(owner.get(page, "new") for page in frames)
    n = max(len(found), 1)
    total = sum(len(frames) for frames in found)
    print(f"page size {page_size}, {len(found)} commits, {total} frames, {total / n:.2f} frames per commit")
    for name, count in per_tree.most_common():
        print(f"  {name:40s} {count / n:6.2f} per commit")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
