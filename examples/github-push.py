#!/usr/bin/env python3
"""Shows the github-push example end to end: starts a chat sink on
127.0.0.1:9009, sends a push to main signed as GitHub signs it to the
running examples server, and prints the message that arrives at the sink.

    python3 examples/github-push.py [SERVER_URL]

SERVER_URL defaults to http://127.0.0.1:8080. Exits 0 once the message has
arrived, 1 if it does not within 30 seconds. Python's standard library
only.
"""

import hashlib
import hmac
import http.server
import json
import os
import queue
import sys
import threading
import urllib.request
import uuid

SINK = ("127.0.0.1", 9009)
HERE = os.path.dirname(os.path.abspath(__file__))
arrived = queue.Queue()


class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        arrived.put((self.path, body.decode()))
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"ok": true}')

    def log_message(self, *args):
        pass


def main():
    server_url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"
    sink = http.server.ThreadingHTTPServer(SINK, Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    print(f"chat sink listening on http://{SINK[0]}:{SINK[1]}")

    with open(os.path.join(HERE, "secrets", "github.secret")) as f:
        secret = f.read().strip().encode()
    push = {
        "ref": "refs/heads/main",
        "repository": {"full_name": "acme/shop"},
        "pusher": {"name": "ada"},
        "commits": [{"id": "1a2b3c"}, {"id": "4d5e6f"}],
        "head_commit": {"message": "Fix the checkout total"},
    }
    body = json.dumps(push).encode()
    signature = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"{server_url}/hooks/github/push",
        data=body,
        headers={
            "content-type": "application/json",
            "x-github-event": "push",
            "x-github-delivery": str(uuid.uuid4()),
            "x-hub-signature-256": signature,
        },
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        print(f"hookflow answered {answer.status}: {answer.read().decode()}")

    try:
        path, message = arrived.get(timeout=30)
    except queue.Empty:
        print("no message arrived at the sink within 30 s")
        return 1
    print(f"the sink got POST {path}: {message}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
