#!/usr/bin/env python3
"""Splits perf profiles of bench_server into where the time goes, per request.

    categories.py RATE_A:PROFILE_A RATE_B:PROFILE_B ...

Each profile is a `perf record` of the server while wrk loaded it; RATE is
the requests per second wrk measured in the same run. The server runs on
one core at 100 %, so a category's share of the samples times 1/RATE is its
time per request. Prints one Markdown table, a column per profile.
"""
import collections
import re
import subprocess
import sys

RULES = [  # (category, test on (dso, kind, symbol)), first match wins
    ("kernel", lambda d, k, s: k == "k" or "kernel" in d),
    ("malloc/free", lambda d, k, s: "libc" in d and re.search(r"malloc|free|tcache|consolidate|unlink|_int_", s)),
    ("memcpy/memset", lambda d, k, s: re.search(r"mem(cpy|move|set)", s)),
    ("libc, other", lambda d, k, s: "libc" in d),
    ("session_layer", lambda d, k, s: "session_layer" in s),
    ("sha2/hmac", lambda d, k, s: re.search(r"sha2|hmac|digest", s)),
    ("base64", lambda d, k, s: "base64" in s),
    ("serde/serde_json", lambda d, k, s: "serde" in s),
    ("hyper", lambda d, k, s: "hyper" in s),
    ("tokio/mio", lambda d, k, s: "tokio" in s or "mio" in s),
    ("axum/tower", lambda d, k, s: re.search(r"axum|matchit|tower", s)),
    ("http/bytes/httparse", lambda d, k, s: re.search(r"http::|http_body|bytes::|httparse", s)),
    ("hashbrown", lambda d, k, s: "hashbrown" in s or "core::hash" in s),
    ("time/clock", lambda d, k, s: "time::" in s or "clock" in s or "vdso" in d),
    ("tracing", lambda d, k, s: "tracing" in s),
    ("cookie/percent_encoding", lambda d, k, s: "cookie::" in s or "percent_encoding" in s),
]


def shares(path):
    out = subprocess.run(
        ["perf", "report", "-i", path, "--no-children", "--sort", "dso,symbol", "--stdio", "-g", "none"],
        capture_output=True, text=True, check=True,
    ).stdout
    found, total = collections.Counter(), 0.0
    for line in out.splitlines():
        m = re.match(r"\s+([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)", line)
        if not m:
            continue
        pct, dso, kind, sym = float(m.group(1)), m.group(2), m.group(3), m.group(4).strip()
        total += pct
        cat = next((c for c, rule in RULES if rule(dso, kind, sym)), "other")
        found[cat] += pct
    return found, total


def main():
    columns = []
    for arg in sys.argv[1:]:
        rate, path = arg.split(":", 1)
        columns.append((path, float(rate), *shares(path)))
    names = [c for c, _ in RULES] + ["other"]
    print("| category | " + " | ".join(p.rsplit("/", 1)[-1].removesuffix(".data") for p, *_ in columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name in names:
        cells = [f"{found[name] / total * 1e6 / rate:.2f}" for _, rate, found, total in columns]
        if any(cell != "0.00" for cell in cells):
            print(f"| {name} | " + " | ".join(cells) + " |")
    print("| **total (µs per request)** | " + " | ".join(f"{1e6 / rate:.2f}" for _, rate, *_ in columns) + " |")


if __name__ == "__main__":
    main()
