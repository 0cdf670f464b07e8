"""Built-in sandbox time to verdict: an HTML attachment and a JS dropper.

Each sample is detonated N times in its confined backend (Chromium for the
page, box-js for the dropper), one after another; prints median and max.

    .venv/bin/python bench/sandbox_latency.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailward.attachments.sandbox import Sample  # noqa: E402
from mailward.attachments.sandbox.boxjs import BoxJsSandbox, find_boxjs  # noqa: E402
from mailward.attachments.sandbox.browser import BrowserSandbox  # noqa: E402
from mailward.attachments.sandbox.confine import Limits  # noqa: E402
from tests.attachments import samples  # noqa: E402


def measure(backend, sample: Sample, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        report = backend.poll(backend.submit(sample))
        times.append(time.perf_counter() - started)
        verdict = report.verdict
    print(f"  last verdict: {verdict} ({report.summary[:80]})")
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mw-bench-"))
    limits = Limits(seconds=40, memory=2 * 1024 ** 3)
    page = samples.smuggling_page(samples.zip_of({"a.js": samples.JS_DROPPER}))
    cases = [("HTML attachment (browser)", BrowserSandbox("/usr/bin/chromium", work, limits),
              Sample("invoice.html", page, "html"))]
    program = find_boxjs("", work)
    if program:
        cases.append(("JS dropper (box-js)", BoxJsSandbox(program, work, limits),
                      Sample("invoice.js", samples.JS_DROPPER, "script-js")))
    else:
        print("box-js not found: npm install box-js")
    for title, backend, sample in cases:
        print(title)
        times = measure(backend, sample, args.runs)
        print(f"  {args.runs} runs: median {statistics.median(times):.2f}s, "
              f"max {max(times):.2f}s")


if __name__ == "__main__":
    main()
