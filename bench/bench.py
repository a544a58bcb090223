#!/usr/bin/env python3
"""End-to-end benchmarks of ivr-campaign on its built-in simulator (a separate process on loopback).

    python3 bench/bench.py                 # everything (about 15 minutes on 2 cores)
    python3 bench/bench.py --smoke         # tiny sizes, one run each: checks the harness works (CI-safe)
    python3 bench/bench.py --only rate,sdk # some sections: rate, sdk, throughput, polls, resume, gateways

Sections (numbers refer to BENCHMARKS.md):
  rate        1. achieved call-request rate at 25/s and 200/s over 22 s, busiest 1-s window, lag behind schedule
  sdk         2. wall time against the SDK's documented one-at-a-time loop (bench/sdk_loop.py), rows right
  throughput  3. contacts/s end to end and peak RSS at 200k and 1M contacts, zero call time, unlimited rate
  polls       4. status polls per call against the minimum (call length / poll interval)
  resume      5. time to reopen a 1M-row journal and place the next call
  gateways    7. wall time of one campaign over 1, 2 and 4 simulated gateways of 8 lines each (1 s calls)
  turnover    9. against bench/gateway.py: freed line to next request, polls per call, time vs in-order bound
  lines       9. against bench/gateway.py: calls outstanding with --lines 300 (past the 128 requests in flight)
  gwrate      9. against bench/gateway.py: the rate at 25/s and 200/s with 1,000 lines and 1 s calls
  mixes      10. against bench/gateway.py: time vs in-order bound and polls per call on 8 lists of mixed lengths
Parser throughput (6.) is `cargo bench --bench parser`.

Medians of several runs are printed, and ratios come from one run. Results also go to bench/last-run.json.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# IVR_BENCH_BIN: benchmark a copy, so a rebuild during a long run cannot swap the binary under it.
BIN = os.environ.get("IVR_BENCH_BIN") or os.path.join(ROOT, "target", "release", "ivr-campaign")
# IVR_BENCH_BASELINE_BIN: another build (say the last release) measured in the same run, alternating with this
# one, so a throughput ratio between the two comes from one run on one noisy machine.
BASELINE = os.environ.get("IVR_BENCH_BASELINE_BIN")
AREAS = [212, 646, 718, 917, 347, 415, 312, 617, 202, 305]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def contacts(path, n, e164=False):
    """n distinct valid US numbers."""
    with open(path, "w") as f:
        f.write("id,name,phone\n")
        i = 0
        for a in AREAS:
            for ex in range(201, 1000):
                for line in range(0, 10000, 7):
                    if i >= n:
                        return
                    phone = f"+1{a}{ex}{line:04d}" if e164 else f"({a}) {ex}-{line:04d}"
                    f.write(f"{i + 1},Person {i},{phone}\n")
                    i += 1


class Sim:
    def __init__(self, *args, record=None):
        self.port = free_port()
        cmd = [BIN, "-q", "simulate", "--listen", f"127.0.0.1:{self.port}", *args]
        if record:
            cmd += ["--record", record]
        self.proc = subprocess.Popen(cmd)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("simulator did not start")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=10)


def fresh(out_csv):
    """Starts a campaign over: its journal and its results (a results file without a journal is refused)."""
    shutil.rmtree(out_csv + ".state", ignore_errors=True)
    for p in (out_csv, os.path.join(os.path.dirname(out_csv), f".{os.path.basename(out_csv)}.lock")):
        if os.path.exists(p):
            os.remove(p)


def runner(args, binary=None):
    """Runs ivr-campaign; returns (seconds, exit code, stderr, peak RSS in MiB of that process alone)."""
    start = time.monotonic()
    p = subprocess.Popen([binary or BIN, "-q", *args], stderr=subprocess.PIPE, text=True)
    err_chunks = []
    # wait4 gives this child's own rusage; read stderr first so a full pipe cannot block it.
    err_chunks.append(p.stderr.read())
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return time.monotonic() - start, p.returncode, "".join(err_chunks), usage.ru_maxrss / 1024


def records(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def call_times(recs):
    return sorted(r["at_ms"] for r in recs if r["path"].endswith("callreqHandler.jsp") and r["outcome"] == "scheduled")


def bench_rate(work, smoke):
    out = {}
    for rate in (25, 200):
        seconds = 3 if smoke else 22
        n = rate * seconds
        runs = []
        for _ in range(1 if smoke else 3):
            d = tempfile.mkdtemp(dir=work)
            csv_path = os.path.join(d, "c.csv")
            contacts(csv_path, n)
            rec = os.path.join(d, "rec.jsonl")
            sim = Sim("--lines", "100000", "--ring-delay", "0ms", "--call-duration", "0ms", record=rec)
            try:
                wall, code, err, _ = runner(["run", "--input", csv_path, "--gateway", sim.url, "--app", "A",
                                             "--rate", f"{rate}/s", "--lines", "1000", "--poll-interval", "0ms",
                                             "--poll-rate", "unlimited"])
            finally:
                sim.stop()
            assert code == 0, err
            t = call_times(records(rec))
            span = (t[-1] - t[0]) / 1000
            achieved = (len(t) - 1) / span
            # Steady state: from the first request after the first second (the start-up burst excluded).
            steady_t = [u for u in t if u >= t[0] + 1000]
            steady = (len(steady_t) - 1) / ((steady_t[-1] - steady_t[0]) / 1000)
            busiest = max(sum(1 for u in t[i:i + rate * 2 + 100] if u < s + 1000) for i, s in enumerate(t))
            lags = sorted(t[i] - (t[0] + i * 1000 / rate) for i in range(len(t)))
            first_100ms = sum(1 for u in t if u < t[0] + 100)
            runs.append({"achieved": achieved, "error_pct": (achieved - rate) / rate * 100, "steady": steady,
                         "steady_error_pct": (steady - rate) / rate * 100, "busiest_1s": busiest,
                         "first_100ms": first_100ms, "lag_p50_ms": lags[len(lags) // 2],
                         "lag_p99_ms": lags[int(len(lags) * 0.99)], "lag_max_ms": lags[-1], "requests": len(t)})
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        out[f"{rate}/s"] = {"median": med, "runs": runs}
        print(f"rate {rate}/s over {seconds}s: achieved {med['achieved']:.3f}/s ({med['error_pct']:+.2f}%), "
              f"steady {med['steady']:.3f}/s ({med['steady_error_pct']:+.2f}%), "
              f"busiest 1-s window {med['busiest_1s']:.0f}, first 100 ms {med['first_100ms']:.0f}, "
              f"lag p50 {med['lag_p50_ms']:.1f} ms p99 {med['lag_p99_ms']:.1f} ms max {med['lag_max_ms']:.1f} ms "
              f"(median of {len(runs)})")
    return out


def sdk_scenario(retried):
    numbers = ", ".join(f'"{p}"' for p in sorted(retried))
    return f"""
[[rule]]
numbers = [{numbers}]
steps = ["retry", {{ status = "made", responses = "Confirm=2" }}]
[[rule]]
steps = [{{ status = "made", responses = "Confirm=1" }}]
"""


def bench_sdk(work, smoke):
    d = tempfile.mkdtemp(dir=work)
    csv_path = os.path.join(d, "c.csv")
    contacts(csv_path, 30, e164=True)
    phones = [line.split(",")[2].strip() for line in open(csv_path).readlines()[1:]]
    # Ground truth from the scenario: every call ends made; every third after one unanswered attempt.
    retried = set(phones[::3])
    scen = os.path.join(d, "scenario.toml")
    with open(scen, "w") as f:
        f.write(sdk_scenario(retried))
    ring, talk, retry_delay, lines, poll = 0.1, 0.2, 0.3, 8, 0.1
    durations = [(ring + retry_delay + ring + talk) if p in retried else (ring + talk) for p in phones]
    line_time = sum(durations)
    limit = line_time / lines
    # Calls go out in input order, so the best possible makespan is list scheduling in that order.
    import heapq
    free = [0.0] * lines
    for dur in durations:
        heapq.heappush(free, heapq.heappop(free) + dur)
    in_order = max(free)
    sim_args = ["--lines", str(lines), "--ring-delay", f"{int(ring * 1000)}ms", "--call-duration",
                f"{int(talk * 1000)}ms", "--retry-delay", f"{int(retry_delay * 1000)}ms", "--scenario", scen]
    runs = []
    for i in range(1 if smoke else 3):
        sim = Sim(*sim_args)
        out_csv = os.path.join(d, f"r{i}.csv")
        try:
            ours, code, err, _ = runner(["run", "--input", csv_path, "--output", out_csv, "--gateway", sim.url,
                                         "--app", "A", "--lines", str(lines), "--rate", "unlimited",
                                         "--poll-interval", f"{int(poll * 1000)}ms", "--poll-rate", "unlimited"])
        finally:
            sim.stop()
        assert code == 0, err
        import csv as csvmod
        rows = list(csvmod.DictReader(open(out_csv)))
        ours_right = sum(1 for r in rows if r["status"] == "made" and
                         r["responses"] == ("Confirm=2" if r["phone"] in retried else "Confirm=1"))
        sim = Sim(*sim_args)
        sdk_json = os.path.join(d, f"sdk{i}.json")
        try:
            t0 = time.monotonic()
            subprocess.run([sys.executable, os.path.join(ROOT, "bench", "sdk_loop.py"), sim.url, csv_path, "A",
                            str(poll), sdk_json], check=True)
            sdk_wall = time.monotonic() - t0
        finally:
            sim.stop()
        sdk = json.load(open(sdk_json))
        sdk_right = sum(1 for r in sdk["rows"] if r["status"] == "Call Made")
        runs.append({"ours_s": ours, "sdk_s": sdk_wall, "ratio": ours / sdk_wall, "ours_right": ours_right,
                     "sdk_right_status": sdk_right})
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"sdk: 30 contacts, {lines} lines, {ring + talk:.1f}s calls, {len(retried)} retried once: "
          f"ivr-campaign {med['ours_s']:.2f}s vs SDK loop {med['sdk_s']:.2f}s, ratio {med['ratio']:.3f} "
          f"(limit: line time / lines = {limit:.2f}s = {limit / med['sdk_s']:.3f} of the SDK's time; "
          f"in input order {in_order:.2f}s = {in_order / med['sdk_s']:.3f}); rows right: "
          f"ours {med['ours_right']:.0f}/30 (status and responses), SDK {med['sdk_right_status']:.0f}/30 "
          f"(status only: the SDK reads no responses)")
    return {"median": med, "runs": runs, "limit_s": limit, "in_order_limit_s": in_order}


def bench_throughput(work, smoke):
    out = {}
    cases = ((2000, 200),) if smoke else ((200_000, 200), (200_000, 2000), (1_000_000, 200))
    builds = [("this", BIN)] + ([("baseline", BASELINE)] if BASELINE else [])
    for n, lines in cases:
        d = tempfile.mkdtemp(dir=work)
        csv_path = os.path.join(d, "c.csv")
        contacts(csv_path, n)
        runs = {name: [] for name, _ in builds}
        for _ in range(1 if smoke or n >= 1_000_000 else 3):
            # Alternating builds, so a noisy minute hurts both alike.
            for name, binary in builds:
                out_csv = os.path.join(d, f"r-{name}.csv")
                fresh(out_csv)
                sim = Sim("--lines", "100000", "--ring-delay", "0ms", "--call-duration", "0ms")
                try:
                    wall, code, err, rss = runner(["run", "--input", csv_path, "--output", out_csv, "--gateway",
                                                   sim.url, "--app", "A", "--rate", "unlimited", "--lines",
                                                   str(lines), "--poll-interval", "0ms", "--poll-rate", "unlimited"],
                                                  binary)
                finally:
                    sim.stop()
                assert code == 0, err
                runs[name].append({"seconds": wall, "contacts_per_s": n / wall, "peak_rss_mib": rss})
        shutil.rmtree(d)
        key = f"{n}x{lines}"
        out[key] = {}
        for name, _ in builds:
            med = {k: statistics.median(r[k] for r in runs[name]) for k in runs[name][0]}
            out[key][name] = {"median": med, "runs": runs[name]}
            print(f"throughput {n} contacts, {lines} lines ({name}): {med['seconds']:.1f}s, "
                  f"{med['contacts_per_s']:.0f} contacts/s end to end, peak RSS {med['peak_rss_mib']:.1f} MiB "
                  f"(median of {len(runs[name])})")
        if BASELINE:
            ratio = out[key]["this"]["median"]["contacts_per_s"] / out[key]["baseline"]["median"]["contacts_per_s"]
            out[key]["ratio"] = ratio
            print(f"throughput {n} contacts, {lines} lines: this build / baseline = {ratio:.3f}")
    return out


def bench_polls(work, smoke):
    n = 10 if smoke else 40
    ring, talk, poll = 1.0, 1.0, 0.25
    minimum = (ring + talk) / poll
    res = {"minimum": minimum}
    for budget in ("unlimited", "10/s"):
        d = tempfile.mkdtemp(dir=work)
        csv_path = os.path.join(d, "c.csv")
        contacts(csv_path, n)
        rec = os.path.join(d, "rec.jsonl")
        sim = Sim("--lines", str(n), "--ring-delay", "1s", "--call-duration", "1s", record=rec)
        try:
            wall, code, err, _ = runner(["run", "--input", csv_path, "--gateway", sim.url, "--app", "A", "--rate",
                                         "unlimited", "--lines", str(n), "--poll-interval", "250ms",
                                         "--poll-rate", budget])
        finally:
            sim.stop()
        assert code == 0, err
        per = {}
        for r in records(rec):
            if r["path"].endswith("callstatusHandler.jsp"):
                per[r["req_id"]] = per.get(r["req_id"], 0) + 1
        counts = sorted(per.values())
        res[budget] = {"calls": len(counts), "mean": statistics.mean(counts), "max": counts[-1], "seconds": wall}
        print(f"polls per call (poll-rate {budget}): {statistics.mean(counts):.2f} mean, {counts[-1]} max, against "
              f"a minimum of {minimum:.0f} ({ring + talk:.0f}s calls, {poll * 1000:.0f} ms interval, {len(counts)} "
              f"calls at once); run {wall:.1f}s")
    return res


def bench_resume(work, smoke):
    n = 2000 if smoke else 1_000_000
    d = tempfile.mkdtemp(dir=work)
    csv_path = os.path.join(d, "c.csv")
    contacts(csv_path, n)
    out_csv = os.path.join(d, "r.csv")
    args = ["run", "--input", csv_path, "--output", out_csv, "--app", "A", "--rate", "unlimited", "--lines", "200",
            "--poll-interval", "0ms", "--poll-rate", "unlimited"]
    # Build the journal: the gateway is unreachable, so the run ingests everything and stops (exit 75).
    dead = f"http://127.0.0.1:{free_port()}"
    first, code, err, _ = runner(args + ["--gateway", dead, "--max-outage", "1s"])
    assert code == 75, err
    rec = os.path.join(d, "rec.jsonl")
    sim = Sim("--lines", "100000", "--ring-delay", "0ms", "--call-duration", "0ms", record=rec)
    try:
        start = time.time()
        p = subprocess.Popen([BIN, "-q", *args, "--gateway", sim.url], stderr=subprocess.DEVNULL)
        first_call = None
        while first_call is None and p.poll() is None:
            if os.path.exists(rec) and os.path.getsize(rec) > 0:
                with open(rec) as f:
                    first_call = json.loads(f.readline())["at_ms"] / 1000 - start
            else:
                time.sleep(0.005)
        code = p.wait()
        total = time.time() - start
    finally:
        sim.stop()
    assert code == 0
    res = {"contacts": n, "first_run_ingest_s": first, "reopen_to_first_call_s": first_call, "resumed_run_s": total}
    print(f"resume {n} rows: first run (ingest, then outage stop) {first:.1f}s; rerun reopens and places its first "
          f"call after {first_call:.2f}s; whole resumed run {total:.1f}s")
    return res


def bench_gateways(work, smoke):
    """The same list over 1, 2 and 4 gateways of 8 lines, calls holding a line for 1 s: lines are the
    bottleneck, so the ideal wall time with k gateways is a k-th of one gateway's."""
    n = 32 if smoke else 192
    counts = (1, 2, 4)
    runs = {k: [] for k in counts}
    d = tempfile.mkdtemp(dir=work)
    csv_path = os.path.join(d, "c.csv")
    contacts(csv_path, n)
    for _ in range(1 if smoke else 3):
        # Alternating sizes, so a noisy minute hurts each alike.
        for k in counts:
            out_csv = os.path.join(d, f"r{k}.csv")
            fresh(out_csv)
            sims = [Sim("--lines", "8", "--ring-delay", "400ms", "--call-duration", "600ms") for _ in range(k)]
            try:
                gateways = [x for s in sims for x in ("--gateway", s.url)]
                wall, code, err, _ = runner(["run", "--input", csv_path, "--output", out_csv, *gateways, "--app",
                                             "A", "--rate", "unlimited", "--lines", "8", "--poll-interval",
                                             "100ms", "--poll-rate", "unlimited"])
            finally:
                for s in sims:
                    s.stop()
            assert code == 0, err
            runs[k].append(wall)
    shutil.rmtree(d)
    med = {k: statistics.median(runs[k]) for k in counts}
    out = {"contacts": n, "lines_per_gateway": 8, "call_seconds": 1.0}
    for k in counts:
        speedup = med[1] / med[k]
        out[str(k)] = {"median_seconds": med[k], "runs": runs[k], "speedup": speedup, "efficiency": speedup / k}
        print(f"gateways {k} x 8 lines, {n} contacts of 1 s: {med[k]:.2f}s (median of {len(runs[k])}), "
              f"speedup {speedup:.2f} of {k}, {100 * speedup / k:.0f}% of linear")
    return out


class Gw:
    """bench/gateway.py, the independent gateway, as a separate process."""

    def __init__(self, *args):
        self.port = free_port()
        self.record = tempfile.mktemp(suffix=".json")
        self.proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "bench", "gateway.py"), "--port",
                                      str(self.port), "--record", self.record, *args])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("gateway.py did not start")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=10)
        rec = json.load(open(self.record))
        os.remove(self.record)
        return rec


def in_order_bound(durations, lines, rate=None):
    """A runner that sees each final answer the instant it exists: list scheduling in input order, each call
    request no sooner than 1/rate after the one before (the operator's rate binds any runner)."""
    import heapq
    free = [0.0] * lines
    last = None
    ends = []
    for d in durations:
        start = heapq.heappop(free)
        if rate and last is not None:
            start = max(start, last + 1000.0 / rate)
        last = start
        heapq.heappush(free, start + d)
        ends.append(start + d)
    return max(ends)


def turnover(rec, lines):
    """From each status poll that read a final answer to the next call request on the line it freed (the
    first `lines` requests take free lines; each later one takes the line of the oldest final not yet reused)."""
    events = sorted([(r["at"], 0 if r["path"] == "status" else 1, r) for r in rec["requests"]
                     if r["path"] == "call" or (r["path"] == "status" and r.get("final"))], key=lambda e: e[:2])
    freed, waits, calls = [], [], 0
    seen = set()
    for at, kind, r in events:
        if kind == 0:
            if r["reqid"] not in seen:
                seen.add(r["reqid"])
                freed.append(at)
        else:
            calls += 1
            if calls > lines and freed:
                waits.append(at - freed.pop(0))
    return waits


def campaign_on_gateway(work, binary, n, lines, durations_ms, extra, split=False, rate=None):
    """Runs n contacts against bench/gateway.py with `lines` lines; returns figures from the gateway's record.
    `split`: the gateway replies as a plain http.server does (head and body in two TCP segments)."""
    d = tempfile.mkdtemp(dir=work)
    csv_path = os.path.join(d, "c.csv")
    contacts(csv_path, n, e164=True)
    phones = [line.split(",")[2].strip() for line in open(csv_path).readlines()[1:]]
    gw = Gw("--lines", str(lines), "--durations-ms", ",".join(str(x) for x in durations_ms),
            *(["--split-writes"] if split else []))
    try:
        wall, code, err, _ = runner(["run", "--input", csv_path, "--output", os.path.join(d, "r.csv"),
                                     "--gateway", gw.url, "--app", "A", "--lines", str(lines), *extra], binary)
    finally:
        rec = gw.stop()
    assert code == 0, err
    calls = rec["calls"]
    import zlib
    durs = [durations_ms[zlib.crc32(p.encode()) % len(durations_ms)] for p in phones]
    bound = in_order_bound(durs, lines, rate)
    reqs = rec["requests"]
    first = min(r["at"] for r in reqs if r["path"] == "call")
    last_final = max(r["at"] for r in reqs if r["path"] == "status" and r.get("final"))
    polls = sum(1 for r in reqs if r["path"] == "status")
    waits = sorted(turnover(rec, lines))
    late = sorted(r["at"] - calls[r["reqid"]]["final"] for r in reqs if r["path"] == "status" and r.get("final"))
    return {"campaign_ms": last_final - first, "bound_ms": bound, "ratio": (last_final - first) / bound,
            "polls_per_call": polls / len(calls), "calls": len(calls),
            "turnover_p50_ms": waits[len(waits) // 2] if waits else None,
            "turnover_p90_ms": waits[int(len(waits) * 0.9)] if waits else None,
            "seen_late_p50_ms": late[len(late) // 2], "outstanding_max": rec["outstanding_max"]}


def builds():
    out = [("this build", BIN)]
    if BASELINE:
        out.append(("baseline", BASELINE))
    return out


def bench_turnover(work, smoke):
    """Against bench/gateway.py: turnover, polls per call, and time against the in-order bound."""
    out = {}
    paced = ["--rate", "50/s", "--poll-interval", "200ms", "--poll-rate", "unlimited"]
    # name, contacts, lines, call lengths (ms), replies in two segments
    cases = [("short", 30, 8, [300], False), ("short, two-segment replies", 30, 8, [300], True),
             ("short x200", 200, 8, [300], False), ("short x200, two-segment replies", 200, 8, [300], True),
             ("spread", 200, 8, list(range(250, 351, 10)), False),
             ("mixed", 60, 8, [300, 700, 1500, 3000], False)]
    for name, n, lines, durs, split in cases:
        for label, binary in builds():
            runs = [campaign_on_gateway(work, binary, n, lines, durs, paced, split, 50)
                    for _ in range(1 if smoke else 3)]
            med = {k: statistics.median(r[k] for r in runs if r[k] is not None) for k in runs[0]}
            out[f"{name}/{label}"] = {"median": med, "runs": runs}
            print(f"turnover {name} ({n} contacts, {lines} lines, calls {durs} ms), {label}: turnover p50 "
                  f"{med['turnover_p50_ms']:.1f} ms p90 {med['turnover_p90_ms']:.1f} ms, polls/call "
                  f"{med['polls_per_call']:.2f}, campaign {med['campaign_ms']:.0f} ms vs in-order bound "
                  f"{med['bound_ms']:.0f} ms = {med['ratio']:.3f}x, final seen late p50 "
                  f"{med['seen_late_p50_ms']:.0f} ms (median of {len(runs)})")
    return out


def bench_lines(work, smoke):
    """--lines past the cap on requests in flight: 300 calls of 6 s, 300 lines on both sides, no rate limit."""
    out = {}
    n = 60 if smoke else 300
    for label, binary in builds():
        r = campaign_on_gateway(work, binary, n, n, [6000],
                                ["--rate", "unlimited", "--poll-interval", "1s", "--poll-rate", "unlimited"])
        out[label] = r
        print(f"lines {n}, {n} calls of 6 s, {label}: the gateway saw at most {r['outstanding_max']} outstanding; "
              f"campaign {r['campaign_ms'] / 1000:.1f} s (in-order bound {r['bound_ms'] / 1000:.1f} s)")
    return out


def bench_gwrate(work, smoke):
    """The rate against bench/gateway.py, 1,000 lines, 1 s calls, default polling: achieved, busiest second."""
    out = {}
    for rate in (25, 200):
        seconds = 3 if smoke else 22
        for label, binary in builds():
            d = tempfile.mkdtemp(dir=work)
            csv_path = os.path.join(d, "c.csv")
            contacts(csv_path, rate * seconds)
            gw = Gw("--lines", "100000", "--durations-ms", "1000")
            try:
                _, code, err, _ = runner(["run", "--input", csv_path, "--output", os.path.join(d, "r.csv"),
                                          "--gateway", gw.url, "--app", "A", "--rate", f"{rate}/s",
                                          "--lines", "1000"], binary)
            finally:
                rec = gw.stop()
            assert code == 0, err
            t = sorted(r["at"] for r in rec["requests"] if r["path"] == "call")
            achieved = (len(t) - 1) / ((t[-1] - t[0]) / 1000)
            busiest = max(sum(1 for u in t[i:i + rate * 2 + 100] if u < s + 1000) for i, s in enumerate(t))
            out[f"{rate}/s/{label}"] = {"achieved": achieved, "busiest_1s": busiest,
                                        "outstanding_max": rec["outstanding_max"]}
            print(f"gateway.py rate {rate}/s, 1,000 lines, 1 s calls, {label}: achieved {achieved:.3f}/s "
                  f"({(achieved - rate) / rate * 100:+.2f}%), busiest 1-s window {busiest}, "
                  f"outstanding at most {rec['outstanding_max']}")
    return out


def bench_mixes(work, smoke):
    """Against bench/gateway.py: 8 lists of mixed call lengths (60 contacts, 8 lines, the turnover settings), one
    run each and both builds in turn: how the first poll does when no one length fits the calls."""
    out = {}
    paced = ["--rate", "50/s", "--poll-interval", "200ms", "--poll-rate", "unlimited"]
    mixes = [[300, 700, 1500, 3000], [330, 760, 1470, 3050], [300, 700, 1500, 3000, 450, 1100],
             [410, 890, 1320, 2270], [270, 520, 940, 1750, 2600], [600, 610, 1900, 2050], [350, 1200],
             [800, 2300, 2900]]
    for durs in mixes[:2] if smoke else mixes:
        key = ",".join(str(d) for d in durs)
        for label, binary in builds():
            r = campaign_on_gateway(work, binary, 60, 8, durs, paced, False, 50)
            out[f"{key}/{label}"] = r
            print(f"mixes {key} ms, {label}: {r['ratio']:.3f}x the in-order bound, "
                  f"{r['polls_per_call']:.2f} polls per call")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--only", default="rate,sdk,throughput,polls,resume,gateways,turnover,lines,gwrate")
    a = ap.parse_args()
    if not os.environ.get("IVR_BENCH_BIN"):
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="ivr-bench-")
    results = {"date": time.strftime("%Y-%m-%d"), "smoke": a.smoke, "cpus": os.cpu_count()}
    try:
        for name in a.only.split(","):
            results[name] = globals()[f"bench_{name}"](work, a.smoke)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    json.dump(results, open(os.path.join(ROOT, "bench", "last-run.json"), "w"), indent=2)


if __name__ == "__main__":
    main()
