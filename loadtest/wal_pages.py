#!/usr/bin/env python3
"""Which tables and indexes each commit writes: WAL pages per commit, by b-tree.

Usage: python3 loadtest/wal_pages.py COPY_OF_DB COPY_OF_WAL [--last N]

Take the copies while a load test runs (`cp m.db-wal wal && cp m.db db`). They are not one
snapshot, but a page seldom moves to another b-tree within the moment between the two
copies, which is all the naming needs. The script reads the WAL's frames up to the first
one of an older generation (the WAL starts over from its first frame, and frames past the
newest ones are left from before), groups them into commits, and names each page's b-tree
with SQLite's `dbstat` on a scratch copy of the pair. Prints frames per commit, then pages
per commit for each b-tree over the last N commits (default 300). The copies given are
only read; SQLite opens the scratch copy.
"""

import argparse
import collections
import os
import shutil
import sqlite3
import struct
import tempfile

WAL_HEADER = struct.Struct(">8I")
FRAME_HEADER = struct.Struct(">6I")


def commits(wal_path):
    """The WAL's commits, oldest first, each the list of page numbers its frames wrote."""
    with open(wal_path, "rb") as wal:
        _, _, page_size, _, salt1, salt2, _, _ = WAL_HEADER.unpack(wal.read(WAL_HEADER.size))
        done, current = [], []
        while True:
            header = wal.read(FRAME_HEADER.size)
            if len(header) < FRAME_HEADER.size:
                break
            page, size_after_commit, frame_salt1, frame_salt2, _, _ = FRAME_HEADER.unpack(header)
            if (frame_salt1, frame_salt2) != (salt1, salt2):
                break  # a frame of the WAL's previous generation
            wal.seek(page_size, os.SEEK_CUR)
            current.append(page)
            if size_after_commit:
                done.append(current)
                current = []
    return done


def btree_of_pages(db_path, wal_path):
    with tempfile.TemporaryDirectory() as scratch:
        db = os.path.join(scratch, "copy.db")
        shutil.copyfile(db_path, db)
        shutil.copyfile(wal_path, db + "-wal")
        conn = sqlite3.connect(db)
        try:
            return dict(conn.execute("SELECT pageno, name FROM dbstat"))
        finally:
            conn.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("db")
    parser.add_argument("wal")
    parser.add_argument("--last", type=int, default=300)
    args = parser.parse_args()
    found = commits(args.wal)
    if not found:
        raise SystemExit("no whole commit in that WAL")
    frames = sum(len(c) for c in found)
    print(f"{len(found)} commits, {frames} frames, {frames / len(found):.1f} frames per commit")
    names = btree_of_pages(args.db, args.wal)
    recent = found[-args.last:]
    pages = collections.Counter()
    for commit in recent:
        for page in set(commit):
            pages[names.get(page, "(a page added since)")] += 1
    for name, count in pages.most_common():
        print(f"{name:40s} {count / len(recent):7.2f} pages per commit")


if __name__ == "__main__":
    main()
