#!/usr/bin/env python3
"""scripts/bench-dump-pages.py BASE1 BASE2 — how much of a PostgreSQL data
directory a night changed, page by page (8 KiB), between two base backups
of scripts/bench-dump.sh (W/dumps/base1, W/dumps/base2). Prints the pages,
the changed and the new ones, and writes the changed and new pages one
after another to OUT (default /tmp/changed_pages.bin): what a backup that
stores whole changed pages must store at the least (compress OUT with
`zstd -6` to see its size)."""
import os
import sys


def main():
    if len(sys.argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(2)
    a, b = sys.argv[1], sys.argv[2]
    out = sys.argv[3] if len(sys.argv) > 3 else "/tmp/changed_pages.bin"
    pages = changed = new = 0
    with open(out, "wb") as o:
        for root, _dirs, files in os.walk(b):
            for f in sorted(files):
                pb = os.path.join(root, f)
                pa = os.path.join(a, os.path.relpath(pb, b))
                with open(pb, "rb") as fh:
                    db = fh.read()
                da = b""
                if os.path.exists(pa):
                    with open(pa, "rb") as fh:
                        da = fh.read()
                for i in range(0, len(db), 8192):
                    pages += 1
                    page = db[i:i + 8192]
                    if i >= len(da):
                        new += 1
                        o.write(page)
                    elif da[i:i + 8192] != page:
                        changed += 1
                        o.write(page)
    print(f"pages {pages}, changed {changed} ({100 * changed / max(pages, 1):.1f} %), new {new}; written to {out}")


if __name__ == "__main__":
    main()
