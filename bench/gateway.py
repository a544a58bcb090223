#!/usr/bin/env python3
"""An independent Voicent gateway for benchmarks, written from /work/shared/voicent-protocol.md alone.

It shares no code or model with the runner's own simulator, so figures measured against it say how the runner
does against a gateway it was not written with.

    python3 bench/gateway.py --port 8080 --lines 8 --ring-ms 100 --talk-ms 200 --record rec.json

Model: `--lines` lines and one FIFO queue. A call request creates a record at once and queues the call; the call
takes the first line free (in request order) and lasts ring + talk (or, with `--durations-ms a,b,c`, the
duration picked by the number's CRC32, so a list's mix is the same whatever order it is requested in). Its
final answer (`made`) exists from the instant the call ends, never before: a status poll before then reads `[]`.

Every request is recorded (path, request id, arrival time, whether a status reply was final), and every call
(requested, started, final). On SIGINT or SIGTERM the record is written to `--record` as JSON, times in ms
since the gateway started, on the monotonic clock.
"""
import argparse
import json
import signal
import socket
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

T0 = time.monotonic()
# --split-writes: reply as a plain http.server does (head and body in two writes, Nagle on).
SPLIT = False


def now_ms():
    return (time.monotonic() - T0) * 1000.0


class Gateway:
    def __init__(self, lines, durations):
        self.lock = threading.Lock()
        self.line_free = [0.0] * lines
        self.durations = durations
        self.next_id = 1208775078314
        self.calls = {}
        self.requests = []
        self.outstanding_max = 0

    def duration(self, phone):
        return self.durations[zlib.crc32(phone.encode()) % len(self.durations)]

    def place(self, phone):
        with self.lock:
            t = now_ms()
            self.next_id += 1
            rid = str(self.next_id)
            # FIFO over lines: the call starts on the line free first, when both it and the call are there.
            i = min(range(len(self.line_free)), key=lambda k: self.line_free[k])
            start = max(t, self.line_free[i])
            end = start + self.duration(phone)
            self.line_free[i] = end
            self.calls[rid] = {"phone": phone, "requested": t, "started": start, "final": end, "removed": None}
            self.requests.append({"at": t, "path": "call", "reqid": rid})
            outstanding = sum(1 for c in self.calls.values() if c["final"] > t)
            self.outstanding_max = max(self.outstanding_max, outstanding)
            return rid

    def status(self, rid):
        with self.lock:
            t = now_ms()
            c = self.calls.get(rid)
            final = c is not None and c["removed"] is None and c["final"] <= t
            self.requests.append({"at": t, "path": "status", "reqid": rid, "final": final})
            if c is None or c["removed"] is not None:
                return f"ERROR: no such call record: {rid}"
            if not final:
                return "[]"
            return "[0^null^made^2026 11 7 9 0^2026 11 7 9 0^Call succeeded^^^Confirm=1^^\r\n]"

    def remove(self, rid):
        with self.lock:
            t = now_ms()
            self.requests.append({"at": t, "path": "remove", "reqid": rid})
            c = self.calls.get(rid)
            if c is None or c["removed"] is not None:
                return f"ERROR: no such call record: {rid}"
            c["removed"] = t
            return "[removed]"

    def dump(self, path):
        with self.lock:
            out = {"calls": self.calls, "requests": self.requests, "outstanding_max": self.outstanding_max,
                   "lines": len(self.line_free)}
        with open(path, "w") as f:
            json.dump(out, f)


def handler_for(gw):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            if not SPLIT:
                # One write per reply, sent at once: no Nagle delay for the runner to wait out.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, *args):
            pass

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(n).decode("utf-8", "replace")).items()}
            path = self.path.split("?")[0]
            if path.endswith("/callreqHandler.jsp"):
                rid = gw.place(form.get("phoneno", ""))
                body = f"<html><body>Your call is scheduled. [ReqId={rid}]</body></html>\r\n"
            elif path.endswith("/callstatusHandler.jsp"):
                body = gw.status(form.get("reqid", ""))
            elif path.endswith("/callremoveHandler.jsp"):
                body = gw.remove(form.get("reqid", ""))
            else:
                self.send_error(404)
                return
            data = body.encode()
            head = (f"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {len(data)}\r\n\r\n").encode()
            if SPLIT:
                # As http.server's own send_response/end_headers do: the head, then the body, in two writes.
                self.wfile.write(head)
                self.wfile.flush()
                self.wfile.write(data)
            else:
                self.wfile.write(head + data)
            self.wfile.flush()

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--lines", type=int, default=8)
    ap.add_argument("--ring-ms", type=float, default=100)
    ap.add_argument("--talk-ms", type=float, default=200)
    ap.add_argument("--durations-ms", default=None, help="a,b,c: each call's length, picked by its number")
    ap.add_argument("--record", required=True)
    ap.add_argument("--split-writes", action="store_true",
                    help="head and body in two writes with Nagle on, as a plain http.server replies")
    a = ap.parse_args()
    global SPLIT
    SPLIT = a.split_writes
    durations = ([float(x) for x in a.durations_ms.split(",")] if a.durations_ms
                 else [a.ring_ms + a.talk_ms])
    gw = Gateway(a.lines, durations)
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 1024
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), handler_for(gw))

    def stop(*_):
        gw.dump(a.record)
        sys.exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    srv.serve_forever()


if __name__ == "__main__":
    main()
