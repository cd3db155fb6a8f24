#!/usr/bin/env python3
"""A recording, fault-injecting HTTP proxy in front of moto's server, for the end-to-end tests.

Why it exists: moto serves the real AWS APIs, but it neither tells how many requests a client
made nor ever fails part of a batch call. This proxy forwards every request unchanged, and
  - counts requests per API action and records each batch call's entry count, so a test can
    check the batching rules against what actually crossed the wire;
  - counts the body bytes it served for each GET path (ranged reads included), and which
    ranges of the object they were, so a test can hold what a reader says it scanned to what
    the object store sent;
  - on demand, makes a batch call fail partially the honest way: it removes some entries from
    the request before moto sees them, then reports exactly those entries as failed (throttled)
    in the response. The records were never written, so a client that retries them alone ends
    with every row exactly once, and one that retries the whole batch writes duplicates.

Control endpoints (not forwarded):
  GET  /_proxy/stats                    {"requests": {action: n}, "methods": {S3 method: n},
                                         "entries": {action: [n, ...]},
                                         "served": {path: bytes}, "ranges": {path: [[start, end], ...]}}
  POST /_proxy/reset                    clears the counters
  POST /_proxy/fail {"action": A, "every": K, "times": T}
       the next T calls of batch action A fail every K-th entry (1st, K+1-th, ...)
  POST /_proxy/lose_response {"method": M, "path_contains": P, "body_contains": B, "times": T, "seconds": S}
       the next T requests of method M whose path contains P (and whose body contains B, if
       given) are forwarded (and done upstream), but the client gets a 500 InternalError
       instead of the answer, S seconds later (0 unless given): the write happened, the client
       cannot know it
  POST /_proxy/hold {"method": M, "path_contains": P, "body_contains": B, "seconds": S, "times": T}
       the next T requests of method M whose path contains P (and whose body contains B, if
       given) are held S seconds before they are forwarded: a write that lands long after it
       was sent (its sender paused or its network slow), whatever the sender does meanwhile
  POST /_proxy/refuse {"method": M, "path_contains": P, "status": S, "times": T}
       the next T requests of method M whose path contains P are not forwarded: the client
       gets status S (e.g. 403 AccessDenied, which no client retries)
  POST /_proxy/delay {"action": A, "seconds": S, "times": T}
       the next T calls of action A are held S seconds before they are forwarded (a service
       slow to answer: cold connections, credentials, throttling)
  POST /_proxy/chaos {"cut": C, "error": E, "methods": ["GET", ...], "path_contains": P, "seed": N}
       from now on each request of those methods whose path contains P (every path if not
       given): with probability E it is answered 500 InternalError without being forwarded;
       else with probability C it is forwarded and its answer cut in the middle of the body
       (the headers promise the whole length, half of it comes, the connection closes), as
       real S3 does now and then. Seeded: the same requests get the same faults. S3 LISTs are
       GETs. POST with {} turns it off.
  POST /_proxy/cut {"method": M, "path_contains": P, "times": T}
       the next T requests of method M whose path contains P get their answer cut mid-body
  POST /_proxy/latency {"seconds": S}
       from now on every request is held S seconds before it is forwarded: a round trip to a
       region, which moto on loopback does not have (--latency-ms sets it at start)

The stats also say how many requests of each method were in flight at once at most
("in_flight_max"): what a client's concurrency really was, as the service saw it.

Usage: fault_proxy.py --port PORT --upstream http://127.0.0.1:MOTO_PORT [--latency-ms MS]
"""
import argparse
import http.client
import json
import random
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

# Batch actions: (request list field, response shape).
BATCH_ACTIONS = {
    "PutRecords": "Records",          # Kinesis
    "SendMessageBatch": "Entries",    # SQS (JSON protocol)
    "PutRecordBatch": "Records",      # Firehose
}

state_lock = threading.Lock()
state = {"requests": {}, "methods": {}, "entries": {}, "served": {}, "ranges": {}, "faults": {}, "delays": {}, "lost": [], "refused": [], "holds": [],
         "latency": 0.0, "in_flight": {}, "in_flight_max": {}, "chaos": None, "cuts": []}


def action_of(headers, path):
    target = headers.get("X-Amz-Target")
    if target:
        return target.split(".")[-1]
    return "HTTP:" + path.split("?")[0]


def inject(action, request):
    """Removes the entries chosen to fail; returns (new request, failed indexes, original count)."""
    field = BATCH_ACTIONS[action]
    entries = request.get(field, [])
    with state_lock:
        fault = state["faults"].get(action)
        if not fault or fault["times"] <= 0:
            return request, [], len(entries)
        fault["times"] -= 1
        every = max(1, fault["every"])
    failed = [i for i in range(len(entries)) if i % every == 0]
    kept = [e for i, e in enumerate(entries) if i % every != 0]
    new_request = dict(request)
    new_request[field] = kept
    return new_request, failed, len(entries)


def splice(action, response, failed, original_count, request):
    """Puts failure entries back at the failed positions of the upstream response."""
    if action == "PutRecords":
        ok = iter(response.get("Records", []))
        records = []
        for i in range(original_count):
            if i in failed:
                records.append({"ErrorCode": "ProvisionedThroughputExceededException",
                                "ErrorMessage": "Rate exceeded for shard (injected by the test proxy)"})
            else:
                records.append(next(ok))
        response["Records"] = records
        response["FailedRecordCount"] = response.get("FailedRecordCount", 0) + len(failed)
    elif action == "PutRecordBatch":
        ok = iter(response.get("RequestResponses", []))
        records = []
        for i in range(original_count):
            if i in failed:
                records.append({"ErrorCode": "ServiceUnavailableException",
                                "ErrorMessage": "Slow down (injected by the test proxy)"})
            else:
                records.append(next(ok))
        response["RequestResponses"] = records
        response["FailedPutCount"] = response.get("FailedPutCount", 0) + len(failed)
        response.setdefault("Encrypted", False)
    elif action == "SendMessageBatch":
        entries = request.get("Entries", [])
        response.setdefault("Successful", [])
        response.setdefault("Failed", [])
        for i in failed:
            response["Failed"].append({"Id": entries[i]["Id"], "SenderFault": False,
                                       "Code": "InternalError",
                                       "Message": "injected by the test proxy"})
    return response


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, headers=(), cut=False):
        """Answers the request; with `cut`, promises the whole body, sends half of it, and
        closes the connection (an answer cut mid-body, as real S3's are now and then)."""
        # Out of flight before the answer leaves: a client that sends its next request the
        # moment it has this answer must not find this one still counted.
        self.leave_flight()
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if not cut:
            self.wfile.write(body)
            return
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def control(self, body):
        if self.path == "/_proxy/stats":
            with state_lock:
                out = json.dumps({"requests": state["requests"], "methods": state["methods"], "entries": state["entries"], "served": state["served"],
                                  "ranges": state["ranges"], "in_flight_max": state["in_flight_max"]}).encode()
            return self.reply(200, out, [("Content-Type", "application/json")])
        if self.path == "/_proxy/reset":
            with state_lock:
                state["requests"].clear()
                state["methods"].clear()
                state["entries"].clear()
                state["served"].clear()
                state["ranges"].clear()
                state["faults"].clear()
                state["delays"].clear()
                state["lost"].clear()
                state["refused"].clear()
                state["holds"].clear()
                state["in_flight_max"].clear()
            return self.reply(200, b"{}")
        if self.path == "/_proxy/fail":
            spec = json.loads(body or b"{}")
            with state_lock:
                state["faults"][spec["action"]] = {"every": int(spec.get("every", 2)), "times": int(spec.get("times", 1))}
            return self.reply(200, b"{}")
        if self.path == "/_proxy/lose_response":
            spec = json.loads(body or b"{}")
            with state_lock:
                state["lost"].append({"method": spec["method"], "path_contains": spec["path_contains"], "times": int(spec.get("times", 1)),
                                      "seconds": float(spec.get("seconds", 0)), "body_contains": spec.get("body_contains", "")})
            return self.reply(200, b"{}")
        if self.path == "/_proxy/chaos":
            spec = json.loads(body or b"{}")
            with state_lock:
                state["chaos"] = None if not spec else {"cut": float(spec.get("cut", 0)), "error": float(spec.get("error", 0)),
                                                        "methods": spec.get("methods", ["GET"]), "path_contains": spec.get("path_contains", ""),
                                                        "random": random.Random(int(spec.get("seed", 0)))}
            return self.reply(200, b"{}")
        if self.path == "/_proxy/cut":
            spec = json.loads(body or b"{}")
            with state_lock:
                state["cuts"].append({"method": spec["method"], "path_contains": spec["path_contains"], "times": int(spec.get("times", 1))})
            return self.reply(200, b"{}")
        if self.path == "/_proxy/hold":
            spec = json.loads(body or b"{}")
            with state_lock:
                state["holds"].append({"method": spec["method"], "path_contains": spec["path_contains"], "body_contains": spec.get("body_contains", ""),
                                       "seconds": float(spec["seconds"]), "times": int(spec.get("times", 1))})
            return self.reply(200, b"{}")
        if self.path == "/_proxy/refuse":
            spec = json.loads(body or b"{}")
            with state_lock:
                state["refused"].append({"method": spec["method"], "path_contains": spec["path_contains"],
                                         "status": int(spec.get("status", 403)), "times": int(spec.get("times", 1))})
            return self.reply(200, b"{}")
        if self.path == "/_proxy/delay":
            spec = json.loads(body or b"{}")
            with state_lock:
                state["delays"][spec["action"]] = {"seconds": float(spec["seconds"]), "times": int(spec.get("times", 1))}
            return self.reply(200, b"{}")
        if self.path == "/_proxy/latency":
            spec = json.loads(body or b"{}")
            with state_lock:
                state["latency"] = float(spec["seconds"])
            return self.reply(200, b"{}")
        return self.reply(404, b"unknown control path")

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.startswith("/_proxy/"):
            return self.control(body)
        method = self.command
        with state_lock:
            now = state["in_flight"][method] = state["in_flight"].get(method, 0) + 1
            state["in_flight_max"][method] = max(state["in_flight_max"].get(method, 0), now)
            latency = state["latency"]
        self.in_flight = method
        try:
            if latency:
                time.sleep(latency)
            return self.forward(body)
        finally:
            self.leave_flight()

    def leave_flight(self):
        method, self.in_flight = getattr(self, "in_flight", None), None
        if method:
            with state_lock:
                state["in_flight"][method] -= 1

    def forward(self, body):
        action = action_of(self.headers, self.path)
        failed, original_count, request = [], 0, None
        if action in BATCH_ACTIONS and body:
            request = json.loads(body)
            forwarded, failed, original_count = inject(action, request)
            if failed:
                body = json.dumps(forwarded).encode()
        hold = 0.0
        with state_lock:
            state["requests"][action] = state["requests"].get(action, 0) + 1
            # S3 (no X-Amz-Target): also by HTTP method, as S3 bills them (PUT, GET, ...).
            if not self.headers.get("X-Amz-Target"):
                method = self.command
                if method == "PUT" and self.headers.get("x-amz-copy-source"):
                    method = "COPY"
                elif method == "GET" and "list-type=" in self.path:
                    method = "LIST"
                state["methods"][method] = state["methods"].get(method, 0) + 1
            if request is not None:
                state["entries"].setdefault(action, []).append(original_count)
            delay = state["delays"].get(action)
            if delay and delay["times"] > 0:
                delay["times"] -= 1
                hold = delay["seconds"]
            held = next((h for h in state["holds"] if h["times"] > 0 and h["method"] == self.command and h["path_contains"] in self.path
                         and h["body_contains"].encode() in body), None)
            if held:
                held["times"] -= 1
                hold = max(hold, held["seconds"])
                state["requests"]["held:" + self.path] = state["requests"].get("held:" + self.path, 0) + 1
        if hold:
            time.sleep(hold)

        if failed and original_count == len(failed):
            # Every entry fails: the real service answers without writing anything, and an
            # empty batch would be a client error upstream.
            content_type = "application/x-amz-json-1.0" if action == "SendMessageBatch" else "application/x-amz-json-1.1"
            data = json.dumps(splice(action, {}, failed, original_count, request)).encode()
            return self.reply(200, data, [("Content-Type", content_type)])
        with state_lock:
            refuse = next((r for r in state["refused"] if r["times"] > 0 and r["method"] == self.command and r["path_contains"] in self.path), None)
            if refuse:
                refuse["times"] -= 1
                state["requests"]["refused:" + self.path] = state["requests"].get("refused:" + self.path, 0) + 1
        if refuse:
            error = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code><Message>refused by the test proxy</Message></Error>"
            return self.reply(refuse["status"], error, [("Content-Type", "application/xml")])
        # Chaos: a 500 before the request is done, or its answer cut mid-body (below).
        # (The answer leaves after the lock is released: reply takes it to leave the flight.)
        cut = fail = False
        with state_lock:
            chaos = state["chaos"]
            if chaos and self.command in chaos["methods"] and chaos["path_contains"] in self.path:
                draw = chaos["random"].random()
                fail = draw < chaos["error"]
                if fail:
                    state["requests"]["chaos-500:" + self.command] = state["requests"].get("chaos-500:" + self.command, 0) + 1
                cut = not fail and draw < chaos["error"] + chaos["cut"]
            rule = next((c for c in state["cuts"] if c["times"] > 0 and c["method"] == self.command and c["path_contains"] in self.path), None)
            if rule:
                rule["times"] -= 1
                cut = True
        if fail:
            error = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InternalError</Code><Message>chaos of the test proxy</Message></Error>"
            return self.reply(500, error, [("Content-Type", "application/xml")])
        upstream = self.server.upstream
        conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("content-length", "connection")}
        headers["Content-Length"] = str(len(body))
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        if failed and resp.status == 200:
            data = json.dumps(splice(action, json.loads(data), failed, original_count, request)).encode()
        out_headers = [(k, v) for k, v in resp.getheaders()
                       if k.lower() not in ("content-length", "connection", "transfer-encoding", "content-md5")]
        conn.close()
        with state_lock:
            # Only a write that was done can have its answer lost: a refused one (a conditional
            # put that lost its race) leaves the rule for the next.
            lose = next((l for l in state["lost"] if l["times"] > 0 and l["method"] == self.command and l["path_contains"] in self.path
                         and l.get("body_contains", "").encode() in body), None) if resp.status < 300 else None
            if lose:
                lose["times"] -= 1
                state["requests"]["lost:" + self.path] = state["requests"].get("lost:" + self.path, 0) + 1
        if lose and resp.status < 300:
            time.sleep(lose["seconds"])
            error = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InternalError</Code><Message>lost by the test proxy</Message></Error>"
            return self.reply(500, error, [("Content-Type", "application/xml")])
        if self.command == "GET" and resp.status in (200, 206):
            path = self.path.split("?", 1)[0]
            # Which bytes of the object: a ranged read's Content-Range, else all of it.
            start = 0
            content_range = resp.getheader("Content-Range") or ""
            if resp.status == 206 and content_range.startswith("bytes "):
                start = int(content_range[6:].split("-", 1)[0])
            with state_lock:
                state["served"][path] = state["served"].get(path, 0) + len(data)
                state["ranges"].setdefault(path, []).append([start, start + len(data)])
        if cut and len(data) > 1:
            with state_lock:
                state["requests"]["cut:" + self.command] = state["requests"].get("cut:" + self.command, 0) + 1
            return self.reply(resp.status, data, out_headers, cut=True)
        self.reply(resp.status, data, out_headers)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_any


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="hold every request this long before forwarding it")
    args = parser.parse_args()
    state["latency"] = args.latency_ms / 1000
    # A listen backlog of 5 (the default) drops connections when a client opens dozens at once
    # (a commit's concurrent PUTs), and a dropped SYN costs the client a second.
    ThreadingHTTPServer.request_queue_size = 256
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.upstream = urlparse(args.upstream)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
