#!/usr/bin/env python3
"""Turns run-peers.sh's results.tsv (one run) into the README's tables:
wall seconds, peak RSS and repository size per step, and cairn's ratio to
the best peer."""
import sys
from collections import OrderedDict

rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
if rows and rows[0][0] == "tool":
    rows = rows[1:]
tools = list(OrderedDict.fromkeys(r[0] for r in rows))
steps = list(OrderedDict.fromkeys(r[1] for r in rows if r[1] != "verify"))
val = {(r[0], r[1]): r for r in rows}
peers = [t for t in tools if t != "cairn"]

def table(title, col, fmt, better="low"):
    print(f"\n**{title}**\n")
    print("| step | " + " | ".join(tools) + " | cairn / best peer |")
    print("|---|" + "---:|" * (len(tools) + 1))
    for s in steps:
        cells, nums = [], {}
        for t in tools:
            r = val.get((t, s))
            v = r[col] if r and len(r) > col and r[col] else ""
            if v:
                nums[t] = float(v)
                cells.append(fmt(float(v)))
            else:
                cells.append("")
        peer_vals = [nums[t] for t in peers if t in nums]
        ratio = ""
        if "cairn" in nums and peer_vals and min(peer_vals) > 0:
            ratio = f"{nums['cairn'] / min(peer_vals):.2f}"
        print(f"| {s} | " + " | ".join(cells) + f" | {ratio} |")

table("Wall time (s)", 2, lambda v: f"{v:.1f}")
table("Peak RSS (MiB)", 3, lambda v: f"{v / 1024:.0f}")
table("Repository size after the step (MiB)", 4, lambda v: f"{v / 1048576:.1f}")
verify = {r[0]: r[8] if len(r) > 8 else "" for r in rows if r[1] == "verify"}
print("\nRestore verified with `diff -r` against the source: " + ", ".join(f"{t} {verify.get(t, '?')}" for t in tools) + ".")
