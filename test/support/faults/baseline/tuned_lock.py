"""`consul lock` with a tuned session: the same loop as the Go api.Lock behind `consul lock`
(session with serfHealth, renewed every TTL/2; acquire; run the child; watch the key and
SIGTERM the child when the lock is lost; release on exit), but the session is created with a
short LockDelay, which `consul lock` has no flag for, and a lock-delay refusal is retried every
500 ms instead of api.Lock's 5 s.
argv: consul_http_addr key lock_delay child_argv..."""
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

addr, key, lock_delay = sys.argv[1:4]
child_argv = sys.argv[4:]
TTL = 15


def call(method, path, body=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(addr + path, data=data, method=method)
    with urllib.request.urlopen(req, timeout=timeout) as res:
        text = res.read().decode()
        return json.loads(text) if text else None, res.headers.get("X-Consul-Index")


session = call("PUT", "/v1/session/create", {"Name": "tuned-lock", "LockDelay": lock_delay, "TTL": f"{TTL}s", "Behavior": "release"})[0]["ID"]
stopping = threading.Event()
child = None


def renew():
    while not stopping.wait(TTL / 2):
        try:
            call("PUT", f"/v1/session/renew/{session}")
        except Exception:
            pass


def finish(_sig=None, _frame=None):
    stopping.set()
    if child and child.poll() is None:
        child.terminate()
        child.wait(5)
    try:
        call("PUT", f"/v1/kv/{key}?release={session}", timeout=2)
        call("PUT", f"/v1/session/destroy/{session}", timeout=2)
    except Exception:
        pass
    sys.exit(0)


signal.signal(signal.SIGTERM, finish)
threading.Thread(target=renew, daemon=True).start()
index = "0"
while True:
    try:
        entries, index = call("GET", f"/v1/kv/{key}?index={index}&wait=5s", timeout=8)
    except urllib.error.HTTPError as e:
        if e.code != 404:
            time.sleep(1)
            continue
        entries, index = None, e.headers.get("X-Consul-Index") or "0"
    except Exception:
        time.sleep(1)
        continue
    if entries and entries[0].get("Session"):
        continue
    if call("PUT", f"/v1/kv/{key}?acquire={session}", {"holder": session})[0]:
        break
    time.sleep(0.5)
    index = "0"

child = subprocess.Popen(child_argv)
failures = 0
index = "0"
while child.poll() is None:
    try:
        entries, index = call("GET", f"/v1/kv/{key}?index={index}&wait=2s", timeout=4)
        failures = 0
        if not entries or entries[0].get("Session") != session:
            break
    except Exception:
        failures += 1
        if failures > 3:
            break
        time.sleep(1)
finish()
