#!/usr/bin/env python3
"""The official SDK way, reproduced for comparison: Voicent's Python devnet class and its documented loop.

One contact at a time: callIvr, poll callStatus until the call is final ("Call Made" or "Call Failed"), next
contact. The status mapping is the SDK's own substring search over the whole body (`^made^` -> "Call Made",
`^failed^` -> "Call Failed", `^retry^` -> "Call Will Retry", else ""). The SDK reads no IVR responses. (Its
sample loop stops at any non-empty status, i.e. at the first `retry`; here it waits for a final answer, which
is the fair comparison.) Usage: sdk_loop.py GATEWAY_URL CSV APP POLL_SECONDS OUT_JSON
"""
import csv
import json
import sys
import time
import urllib.parse
import urllib.request


class Voicent:
    def __init__(self, base):
        self.base = base

    def _post(self, path, params):
        data = urllib.parse.urlencode(params).encode()
        with urllib.request.urlopen(self.base + path, data) as r:
            return r.read().decode("latin-1")

    def callIvr(self, phoneno, appname, selfdelete):
        params = {"info": "call " + phoneno, "phoneno": phoneno, "firstocc": "10",
                  "selfdelete": selfdelete, "startapp": appname}
        body = self._post("/ocall/callreqHandler.jsp", params)
        i = body.find("[ReqId=")
        if i == -1:
            return ""
        i += 7
        j = body.find("]", i)
        return body[i:j] if j != -1 else ""

    def callStatus(self, reqId):
        body = self._post("/ocall/callstatusHandler.jsp", {"reqid": reqId})
        if "^made^" in body:
            return "Call Made"
        if "^failed^" in body:
            return "Call Failed"
        if "^retry^" in body:
            return "Call Will Retry"
        return ""


def main():
    base, path, app, poll, out = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5]
    v = Voicent(base)
    results = []
    start = time.monotonic()
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            req = v.callIvr(row["phone"], app, "0")
            status = ""
            while status not in ("Call Made", "Call Failed"):
                time.sleep(poll)
                status = v.callStatus(req)
            results.append({"phone": row["phone"], "status": status})
    json.dump({"seconds": time.monotonic() - start, "rows": results}, open(out, "w"))


if __name__ == "__main__":
    main()
