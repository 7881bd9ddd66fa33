#!/usr/bin/env python3
"""A thin pipe between an end-to-end test and headless Chromium.

Starts Debian's `chromium` headless with the DevTools protocol on a free
port, attaches to its page and then reads one JSON command a line on
stdin, answering one JSON line on stdout each:

  {"cmd": "viewport", "width": 390, "height": 844, "mobile": true}
  {"cmd": "goto", "url": "http://127.0.0.1:9810/"}      waits for the load event
  {"cmd": "eval", "expr": "document.title"}             -> {"value": ...}
  {"cmd": "screenshot", "path": "x.png", "selector": "#devices"}
  {"cmd": "quit"}

An error answers {"error": "..."}. The test decides what to wait for and
asserts; this script only carries commands (websocket-client, pinned in
scripts/install-test-deps).
"""

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket


def start_chromium(profile):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        raise SystemExit("cdp.py: chromium is not installed (scripts/install-test-deps debian)")
    proc = subprocess.Popen(
        [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-extensions", "--disable-background-networking", "--mute-audio",
         "--remote-debugging-port=0", "--remote-allow-origins=*",
         "--user-data-dir=" + profile, "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    port = None
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            if proc.poll() is not None:
                raise SystemExit("cdp.py: chromium exited with %s" % proc.returncode)
            continue
        if "DevTools listening on ws://" in line:
            port = int(line.split("ws://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
            break
    if port is None:
        raise SystemExit("cdp.py: chromium did not open its DevTools port within 30 s")
    # Keep reading stderr so chromium never blocks on a full pipe.
    import threading
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    while time.time() < deadline:
        with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port) as r:
            pages = [t for t in json.load(r) if t.get("type") == "page"]
        if pages:
            return proc, pages[0]["webSocketDebuggerUrl"]
        time.sleep(0.1)
    raise SystemExit("cdp.py: chromium has no page target")


class Page:
    def __init__(self, url):
        self.ws = websocket.create_connection(url, timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events = []

    def call(self, method, **params):
        self.next_id += 1
        me = self.next_id
        self.ws.send(json.dumps({"id": me, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == me:
                if "error" in msg:
                    raise RuntimeError("%s: %s" % (method, msg["error"].get("message")))
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg["method"])

    def wait_event(self, name, timeout=30):
        deadline = time.time() + timeout
        while name not in self.events:
            if time.time() > deadline:
                raise RuntimeError("no %s within %d s" % (name, timeout))
            self.ws.settimeout(max(0.1, deadline - time.time()))
            msg = json.loads(self.ws.recv())
            if "method" in msg:
                self.events.append(msg["method"])
        self.ws.settimeout(60)

    def evaluate(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise RuntimeError("script error: %s" % d.get("exception", {}).get("description", d.get("text")))
        return r.get("result", {}).get("value")


def handle(page, c):
    cmd = c["cmd"]
    if cmd == "viewport":
        page.call("Emulation.setDeviceMetricsOverride", width=c["width"], height=c["height"],
                  deviceScaleFactor=1, mobile=bool(c.get("mobile")))
        return {}
    if cmd == "goto":
        page.events.clear()
        page.call("Page.navigate", url=c["url"])
        page.wait_event("Page.loadEventFired")
        return {}
    if cmd == "eval":
        return {"value": page.evaluate(c["expr"])}
    if cmd == "screenshot":
        params = {"format": "png", "captureBeyondViewport": True}
        sel = c.get("selector")
        if sel:
            box = page.evaluate(
                "(() => { const r = document.querySelector(%s).getBoundingClientRect();"
                " return [r.left + scrollX, r.top + scrollY, r.width, r.height]; })()" % json.dumps(sel))
            params["clip"] = {"x": box[0], "y": box[1], "width": max(1, box[2]),
                              "height": max(1, box[3]), "scale": 1}
        shot = page.call("Page.captureScreenshot", **params)
        os.makedirs(os.path.dirname(os.path.abspath(c["path"])), exist_ok=True)
        with open(c["path"], "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        return {"bytes": os.path.getsize(c["path"])}
    raise RuntimeError("unknown command %r" % cmd)


def main():
    profile = tempfile.mkdtemp(prefix="edge-cdp-")
    proc, url = start_chromium(profile)
    try:
        page = Page(url)
        page.call("Page.enable")
        page.call("Runtime.enable")
        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            c = json.loads(line)
            if c.get("cmd") == "quit":
                break
            try:
                answer = handle(page, c)
            except Exception as e:  # the test shows it
                answer = {"error": str(e)}
            print(json.dumps(answer), flush=True)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
