"""Connections reused or one per request, against bench/gateway.py (BENCHMARKS.md section 9).

Usage: IVR_REUSE_BIN=/path/to/build-that-reuses IVR_FRESH_BIN=target/release/ivr-campaign python3 bench/connections.py
Both builds run alternately, 3 runs each, on the 200-call list of 0.3 s calls with 8 lines, against a gateway
that replies in two TCP segments and one that replies in one."""
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

builds = [("connections reused", os.environ["IVR_REUSE_BIN"]), ("a connection per request", os.environ["IVR_FRESH_BIN"])]
work = tempfile.mkdtemp()
paced = ["--rate", "50/s", "--poll-interval", "200ms", "--poll-rate", "unlimited"]
for split in (True, False):
    for label, binary in builds:
        runs = [bench.campaign_on_gateway(work, binary, 200, 8, [300], paced, split, 50) for _ in range(3)]
        med = {k: statistics.median(r[k] for r in runs if r[k] is not None) for k in runs[0]}
        print(f"{'two' if split else 'one'}-segment replies, {label}: turnover p50 {med['turnover_p50_ms']:.1f} ms "
              f"p90 {med['turnover_p90_ms']:.1f} ms, polls/call {med['polls_per_call']:.2f}, "
              f"time / in-order bound {med['ratio']:.3f}", flush=True)
