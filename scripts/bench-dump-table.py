#!/usr/bin/env python3
"""scripts/bench-dump-table.py W — the markdown table of scripts/bench-dump.sh.

Reads W/results.tsv (tool, variant, workload, night, repo_bytes, added_bytes,
wall_s, rss_kb, raw_bytes, status), W/dumps/zstd.tsv (workload, raw bytes of
night 1, zstd -3 bytes) and W/versions.txt, and prints, per workload and
tool/variant: the repository size after night 1, the median bytes added per
later night (also as % of the dump's raw size, and as a multiple of restic's),
backup MB/s (raw bytes / wall s: night 1, and the median of the later
nights), the largest max RSS, restore MB/s of the last night and whether it
matched the source.
"""
import csv
import os
import statistics
import sys

W = sys.argv[1] if len(sys.argv) > 1 else "/var/tmp/bench-dump"
MB = 1e6


def mib(b):
    return f"{b / 1048576:,.1f}"


rows = list(csv.DictReader(open(os.path.join(W, "results.tsv")), delimiter="\t"))
zstd = {}
zpath = os.path.join(W, "dumps", "zstd.tsv")
if os.path.exists(zpath):
    for line in open(zpath):
        wl, raw, z = line.split("\t")
        zstd[wl] = (int(raw), int(z))
sizes = {}
spath = os.path.join(W, "dumps", "sizes.tsv")
if os.path.exists(spath):
    for line in open(spath):
        wl, n, b = line.split("\t")
        sizes.setdefault(wl, []).append(int(b))

groups = {}
order = []
for r in rows:
    key = (r["workload"], r["tool"], r["variant"])
    if key not in groups:
        groups[key] = []
        order.append(key)
    groups[key].append(r)


def summary(rs):
    nights = [r for r in rs if r["night"] not in ("0", "restore")]
    ok = all(r["status"] in ("ok", "pass") for r in rs)
    n1 = [r for r in nights if r["night"] == "1"]
    later = [r for r in nights if r["night"] != "1" and r["status"] == "ok"]
    res = [r for r in rs if r["night"] == "restore"]
    s = {"ok": ok, "first": None, "added": None, "pct": None, "mbs1": None, "mbs": None,
         "rss": None, "restore": None, "verify": res[0]["status"] if res else "-"}
    if n1 and n1[0]["status"] == "ok":
        s["first"] = int(n1[0]["repo_bytes"])
        w = float(n1[0]["wall_s"])
        s["mbs1"] = int(n1[0]["raw_bytes"]) / MB / w if w > 0 else None
    if later:
        s["added"] = statistics.median(int(r["added_bytes"]) for r in later)
        raw = statistics.median(int(r["raw_bytes"]) for r in later)
        s["pct"] = 100.0 * s["added"] / raw if raw else None
        rates = [int(r["raw_bytes"]) / MB / float(r["wall_s"]) for r in later if float(r["wall_s"]) > 0]
        s["mbs"] = statistics.median(rates) if rates else None
    good = [int(r["rss_kb"]) for r in nights if r["status"] == "ok"]
    s["rss"] = max(good) if good else None
    if res and res[0]["status"] == "pass" and float(res[0]["wall_s"]) > 0:
        s["restore"] = int(res[0]["raw_bytes"]) / MB / float(res[0]["wall_s"])
    return s


def f(v, fmt):
    return "-" if v is None else format(v, fmt)


print("# Nightly database dump: bytes added per night (scripts/bench-dump.sh)")
print()
names = {"plain": "pg_dump plain (.sql)", "custom": "pg_dump -Fc -Z0 (.dump)",
         "base": "base backup (pg_basebackup -Fp -X none)"}
for wl, (raw, z) in zstd.items():
    ns = sizes.get(wl, [])
    print(f"- {names.get(wl, wl)}: night 1 {mib(raw)} MiB raw, zstd -3 {mib(z)} MiB "
          f"({raw / z:.2f}x); nights: {', '.join(mib(b) for b in ns)} MiB")
vpath = os.path.join(W, "versions.txt")
if os.path.exists(vpath):
    print("- tools: " + "; ".join(l.strip().replace("\t", ": ") for l in open(vpath) if l.strip()))
print()
print("added/night = median repository growth over nights 2..N; backup MB/s = raw dump MB / wall s "
      "(night 1, and median of nights 2..N); restore = the last night, sha256 compared with the source.")
for wl in ("plain", "custom", "base"):
    keys = [k for k in order if k[0] == wl]
    if not keys:
        continue
    restic = [summary(groups[k]) for k in keys if k[1] == "restic"]
    ref = restic[0]["added"] if restic and restic[0]["added"] else None
    print()
    print(f"## {names[wl]}")
    print()
    print("| tool | chunk KiB | night-1 repo MiB | added/night MiB | % of raw | vs restic | "
          "backup MB/s night 1 | backup MB/s later | max RSS MiB | restore MB/s | restore |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for k in keys:
        s = summary(groups[k])
        ratio = f"{s['added'] / ref:.2f}x" if ref and s["added"] is not None else "-"
        print(f"| {k[1]} | {k[2]} | {mib(s['first']) if s['first'] is not None else '-'} | "
              f"{mib(s['added']) if s['added'] is not None else '-'} | {f(s['pct'], '.1f')} | {ratio} | "
              f"{f(s['mbs1'], '.0f')} | {f(s['mbs'], '.0f')} | "
              f"{f(s['rss'] / 1024 if s['rss'] else None, '.0f')} | {f(s['restore'], '.0f')} | "
              f"{s['verify'] if s['ok'] else 'FAIL'} |")
