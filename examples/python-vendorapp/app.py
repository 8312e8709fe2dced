#!/usr/bin/env python3
"""A vendor application for souk merchant, in Python with the standard library only.

It takes souk's signed webhooks (docs/merchant.md, "Hand-off: the webhook contract") and:

  * instance.created   SKU in --refuse-sku  -> refuses the create ({"resultCode":"000106",...})
                       SKU in --async-sku   -> plain 2xx now, appInfo later via POST /api/v1/instances/{id}/appinfo
                       any other SKU        -> appInfo in the answer
                       chargingMode ON_DEMAND -> also records usage via POST /api/v1/instances/{id}/usage
  * instance.change_check -> {"allowed": false, ...} when the new SKU is refused, else {"allowed": true}
  * every other event (renewed, frozen, unfrozen, released, upgraded, order.notified, ...) -> recorded, 2xx

    python3 app.py --listen 127.0.0.1:9000 --secret s3cret \
        --admin-url http://127.0.0.1:8080 --admin-token t0ken --async-sku async --refuse-sku sold=000106
"""
import argparse
import hashlib
import hmac
import json
import threading
import time
import urllib.request
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE = 300  # seconds: "Reject signatures older than 5 minutes"
REFUSAL_CODES = {"000100", "000101", "000102", "000103", "000104", "000105", "000106", "000107"}


def verify(secrets, header, body, now=None):
    """Souk-Signature: t=<unix s>,v1=<hex HMAC-SHA256(secret, t + "." + body)>[,v1=…] (one v1 per souk secret)."""
    parts = [p.strip().split("=", 1) for p in (header or "").split(",") if "=" in p]
    ts = next((v for k, v in parts if k == "t"), "")
    sigs = [v.lower() for k, v in parts if k == "v1"]
    if not (ts.isascii() and ts.isdigit()) or abs((now or time.time()) - int(ts)) > TOLERANCE:
        return False
    for secret in secrets:  # the application may also know two secrets while it switches
        want = hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest().encode()
        if any(hmac.compare_digest(want, s.encode()) for s in sigs):  # bytes: a non-ASCII header is no crash
            return True
    return False


class App:
    def __init__(self, args):
        self.secrets = [s.encode() for s in args.secret.split(",") if s]
        self.admin_url = args.admin_url.rstrip("/")
        self.admin_token = args.admin_token
        self.async_skus = set(args.async_sku)
        self.refuse = dict(r.split("=", 1) if "=" in r else (r, "000106") for r in args.refuse_sku)
        self.tenants = {}  # instanceId -> {"sku", "state", "appInfo"}; a real app keeps this in its database
        self.lock = threading.Lock()

    def log(self, *a):
        print(time.strftime("%H:%M:%S"), *a, flush=True)

    # --- the management API of souk merchant ------------------------------------------------------------
    def api(self, method, path, payload):
        req = urllib.request.Request(self.admin_url + path, method=method, data=json.dumps(payload).encode(),
                                     headers={"Authorization": "Bearer " + self.admin_token,
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def app_info(self, iid, sku):
        return {"frontEndUrl": "https://app.example.com/t/" + iid, "adminUrl": "https://app.example.com/admin/" + iid,
                "userName": "admin", "password": "pw-" + iid[-6:], "memo": "plan " + sku}

    def complete_later(self, iid, sku):
        time.sleep(1)  # provisioning work
        status, body = self.api("POST", f"/api/v1/instances/{iid}/appinfo", {"appInfo": self.app_info(iid, sku)})
        self.log("async appinfo", iid, status, body[:200])

    def record_usage(self, iid, since):
        time.sleep(2)  # metered work; record times are on the wall clock (the market's, when developing)
        fmt = "%Y-%m-%dT%H:%M:%SZ"
        now = datetime.now(timezone.utc)
        rec = {"meteringSn": f"{iid}-{int(now.timestamp())}", "usageValue": "12.5",
               "beginTime": since.strftime(fmt), "endTime": now.strftime(fmt)}
        status, body = self.api("POST", f"/api/v1/instances/{iid}/usage", {"records": [rec]})
        self.log("usage", iid, status, body[:200])

    # --- events -------------------------------------------------------------------------------------------
    def handle(self, ev):
        typ, data = ev["type"], ev.get("data") or {}
        iid, sku = data.get("instanceId", ev.get("subject")), data.get("skuCode", "")
        if typ == "instance.created":
            with self.lock:
                known = iid in self.tenants
                self.tenants.setdefault(iid, {"sku": sku, "state": "provisioning"})
            if sku in self.refuse:
                return {"resultCode": self.refuse[sku], "resultMsg": f"plan {sku} is sold out"}
            if sku in self.async_skus:
                if not known:  # a repeated delivery of a handled create: a plain 2xx (docs/merchant.md)
                    threading.Thread(target=self.complete_later, args=(iid, sku), daemon=True).start()
                return None
            if data.get("chargingMode") == "ON_DEMAND" and not known:
                since = datetime.now(timezone.utc)
                threading.Thread(target=self.record_usage, args=(iid, since), daemon=True).start()
            self.tenants[iid]["state"] = "active"
            return {"appInfo": self.app_info(iid, sku)}
        if typ == "instance.change_check":
            infos = data.get("productInfo")
            infos = infos if isinstance(infos, list) else [infos or {}]  # an object or a list of them
            bad = [i.get("skuCode") for i in infos if i.get("skuCode") in self.refuse]
            if bad:
                return {"allowed": False, "resultCode": "000100", "resultMsg": f"cannot change to {bad[0]}"}
            return {"allowed": True}
        state = {"instance.frozen": "frozen", "instance.unfrozen": "active", "instance.released": "released",
                 "instance.renewed": "active"}.get(typ)
        with self.lock:
            t = self.tenants.setdefault(iid, {"sku": sku, "state": "unknown"})
            if state:
                t["state"] = state
            if typ == "instance.upgraded":
                t["sku"] = sku
        return None  # renewed (data.expireTime, data.scene), upgraded (data.from), order.notified, …: acknowledge

    def server(self, listen):
        app = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                if self.path != "/webhook":
                    return self.reply(404, {"error": "not found"})
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))  # the raw bytes are signed
                if not verify(app.secrets, self.headers.get("Souk-Signature"), body):
                    app.log("REJECTED bad signature", self.headers.get("Souk-Event-Id"))
                    return self.reply(401, {"error": "bad signature"})
                ev = json.loads(body)
                answer = app.handle(ev)
                app.log(ev["type"], ev.get("subject"), "attempt", self.headers.get("Souk-Attempt"),
                        "testFlag" if ev.get("testFlag") else "", "->", json.dumps(answer) if answer else "2xx")
                self.reply(200, answer)

            def do_GET(self):  # what the app knows, for a look from outside
                self.reply(200, app.tenants)

            def reply(self, code, obj):
                data = b"" if obj is None else json.dumps(obj).encode()
                self.send_response(code)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        host, port = listen.rsplit(":", 1)
        return ThreadingHTTPServer((host, int(port)), Handler)


def main():
    p = argparse.ArgumentParser(description="Python vendor app for souk merchant webhooks")
    p.add_argument("--listen", default="127.0.0.1:9000")
    p.add_argument("--secret", required=True, help="SOUK_WEBHOOK_SECRET (comma-separated: any verifies)")
    p.add_argument("--admin-url", default="http://127.0.0.1:8080", help="souk merchant's management API")
    p.add_argument("--admin-token", default="", help="SOUK_ADMIN_TOKEN of the merchant")
    p.add_argument("--async-sku", action="append", default=[], help="complete this SKU through the API")
    p.add_argument("--refuse-sku", action="append", default=[], help="SKU[=CODE]: refuse its creates")
    args = p.parse_args()
    app = App(args)
    srv = app.server(args.listen)
    app.log("listening on", args.listen)
    srv.serve_forever()


if __name__ == "__main__":
    main()
