#!/usr/bin/python3
"""provider.py -- a strict local OAuth2 provider for mailhaul's tests.

    import provider
    p = provider.Provider(cert, key, client_id="cid", client_secret=None)
    p.start()                      # HTTPS on 127.0.0.1, a free port
    p.url("/token")                # https://127.0.0.1:PORT/token
    ...
    p.stop()

Or standalone: provider.py --cert C --key K [--port N] [--client-id ID]
(prints its port, serves until killed).

Endpoints, as strict as the RFCs and the real providers' documentation:
  GET  /authorize   RFC 6749 4.1 + RFC 7636: response_type=code, a known
                    client_id, a loopback redirect_uri (RFC 8252:
                    http://127.0.0.1:PORT/), code_challenge_method=S256
                    and a 43-character challenge; answers 302 to the
                    redirect_uri with code and state (or error=
                    access_denied when deny is set)
  POST /token       form-encoded only; grant_type authorization_code
                    (one-time code, exact redirect_uri, PKCE verifier),
                    refresh_token (scope required, as Microsoft does;
                    rotation when rotate is set; invalid_grant once
                    revoked), urn:ietf:params:oauth:grant-type:device_code
                    (authorization_pending pending times, then slow_down
                    slow_downs times, then the tokens; a poll faster than
                    the interval is answered slow_down as RFC 8628 says)
  POST /device      RFC 8628 3.1: device_code, user_code, verification_uri
  POST /introspect  RFC 7662-ish, for Dovecot's oauth2 passdb:
                    token=... -> {"active": true, "username": USER}

Tokens carry fixed distinctive prefixes (ACCESS_PREFIX, REFRESH_PREFIX)
so tests/no-secrets can look for them in every test's output.
"""
import base64
import hashlib
import http.server
import json
import secrets
import ssl
import sys
import threading
import time
import urllib.parse

ACCESS_PREFIX = "Oa2-AT-7x9Q-"
REFRESH_PREFIX = "Oa2-RT-3p6M-"
CLIENT_SECRET = "Oa2-Cs-8w4N-secret"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class Provider:
    def __init__(self, cert, key, client_id="mailhaul-test", client_secret=None,
                 username="alice", scope="mail offline_access"):
        self.cert, self.key = cert, key
        self.client_id = client_id
        self.client_secret = client_secret
        self.username = username
        self.scope = scope
        self.lifetime = 3600        # access token lifetime, seconds
        self.rotate = False         # new refresh token on every refresh
        self.deny = False           # the user says no at /authorize
        self.pending = 0            # device: authorization_pending answers
        self.slow_downs = 0         # device: then slow_down answers
        self.device_interval = 1
        self.codes = {}             # code -> (client_id, redirect, challenge, scope)
        self.refresh = {}           # refresh token -> scope (live ones)
        self.access = {}            # access token -> expiry
        self.devices = {}           # device code -> dict
        self.log = []               # (path, dict of form/query), in order
        self.lock = threading.Lock()
        self.httpd = None
        self.port = None

    # ---- life cycle ------------------------------------------------------
    def start(self, port=0):
        prov = self

        class H(Handler):
            provider = prov
        self.httpd, self.port = serve_https(H, self.cert, self.key, port)
        return self

    def stop(self):
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    def url(self, path):
        return "https://127.0.0.1:%d%s" % (self.port, path)

    # ---- state -----------------------------------------------------------
    def revoke_all(self):
        with self.lock:
            self.refresh.clear()

    def grants(self, grant_type):
        return [f for p, f in self.log if p == "/token"
                and f.get("grant_type") == grant_type]

    def _issue(self, scope, refresh=True):
        at = ACCESS_PREFIX + secrets.token_hex(16)
        self.access[at] = time.time() + self.lifetime
        out = {"access_token": at, "token_type": "Bearer",
               "expires_in": self.lifetime, "scope": scope}
        if refresh:
            rt = REFRESH_PREFIX + secrets.token_hex(16)
            self.refresh[rt] = scope
            out["refresh_token"] = rt
        return out


def serve_https(handler, cert, key, port=0):
    """A threading HTTPS server for handler on 127.0.0.1 (port 0: a free
    one), serving in a daemon thread; returns (httpd, port)."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, httpd.server_address[1]


def _err(code, desc, status=400):
    return status, {"error": code, "error_description": desc}


class Handler(http.server.BaseHTTPRequestHandler):
    provider = None
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _send(self, status, obj=None, headers=None, text=None):
        body = (json.dumps(obj) if obj is not None else (text or "")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if obj is not None
                         else "text/plain")
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    # ---- GET /authorize ------------------------------------------------------
    def do_GET(self):
        p = self.provider
        u = urllib.parse.urlsplit(self.path)
        try:
            q = dict(urllib.parse.parse_qsl(u.query, strict_parsing=True))
        except ValueError:
            return self._send(400, text="bad query")
        with p.lock:
            p.log.append((u.path, q))
        if u.path != "/authorize":
            return self._send(404, text="no such endpoint")
        if q.get("response_type") != "code":
            return self._send(400, text="response_type must be code")
        if q.get("client_id") != p.client_id:
            return self._send(400, text="unknown client_id")
        red = q.get("redirect_uri", "")
        ru = urllib.parse.urlsplit(red)
        if ru.scheme != "http" or ru.hostname != "127.0.0.1" or \
                ru.port is None or ru.path != "/" or ru.query:
            return self._send(400, text="redirect_uri must be a loopback URI")
        if q.get("code_challenge_method") != "S256" or \
                len(q.get("code_challenge", "")) != 43:
            return self._send(400, text="PKCE S256 required")
        if "state" not in q or "scope" not in q:
            return self._send(400, text="state and scope required")
        if p.deny:
            loc = red + "?" + urllib.parse.urlencode(
                {"error": "access_denied", "state": q["state"]})
        else:
            code = "Oa2-Code-" + secrets.token_hex(8)
            with p.lock:
                p.codes[code] = (q["client_id"], red, q["code_challenge"],
                                 q["scope"])
            loc = red + "?" + urllib.parse.urlencode(
                {"code": code, "state": q["state"]})
        self._send(302, headers={"Location": loc}, text="")

    # ---- POST ----------------------------------------------------------------
    def _form(self):
        if self.headers.get("Content-Type", "").split(";")[0].strip() != \
                "application/x-www-form-urlencoded":
            return None
        n = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(n).decode("ascii")
        try:
            pairs = urllib.parse.parse_qsl(raw, strict_parsing=True,
                                           keep_blank_values=True)
        except ValueError:
            return None
        names = [k for k, _ in pairs]
        if len(names) != len(set(names)):
            return None         # RFC 6749 3.2: no repeated parameters
        return dict(pairs)

    def do_POST(self):
        p = self.provider
        path = urllib.parse.urlsplit(self.path).path
        f = self._form()
        with p.lock:
            p.log.append((path, f or {}))
        if f is None:
            return self._send(*_err("invalid_request", "form encoding required"))
        if path == "/introspect":
            with p.lock:
                exp = p.access.get(f.get("token", ""))
            if exp is not None and exp > time.time():
                return self._send(200, {"active": True, "username": p.username})
            return self._send(200, {"active": False})
        if f.get("client_id") != p.client_id:
            return self._send(*_err("invalid_client", "unknown client", 401))
        if p.client_secret is not None and \
                f.get("client_secret") != p.client_secret:
            return self._send(*_err("invalid_client", "bad client secret", 401))
        if path == "/device":
            return self._device(f)
        if path != "/token":
            return self._send(404, text="no such endpoint")
        g = f.get("grant_type")
        with p.lock:
            if g == "authorization_code":
                st, obj = self._code(f)
            elif g == "refresh_token":
                st, obj = self._refresh(f)
            elif g == DEVICE_GRANT:
                st, obj = self._device_poll(f)
            else:
                st, obj = _err("unsupported_grant_type", str(g))
        self._send(st, obj)

    def _code(self, f):
        p = self.provider
        c = p.codes.pop(f.get("code", ""), None)
        if c is None:
            return _err("invalid_grant", "unknown or used code")
        cid, red, chal, scope = c
        if f.get("redirect_uri") != red:
            return _err("invalid_grant", "redirect_uri mismatch")
        v = f.get("code_verifier", "")
        if not 43 <= len(v) <= 128:
            return _err("invalid_request", "bad code_verifier")
        h = base64.urlsafe_b64encode(hashlib.sha256(v.encode()).digest())
        if h.decode().rstrip("=") != chal:
            return _err("invalid_grant", "PKCE verification failed")
        return 200, p._issue(scope)

    def _refresh(self, f):
        p = self.provider
        rt = f.get("refresh_token", "")
        if rt not in p.refresh:
            return _err("invalid_grant", "the refresh token is revoked")
        if not f.get("scope"):
            return _err("invalid_request", "scope is required (AADSTS90014)")
        out = p._issue(p.refresh[rt], refresh=p.rotate)
        if p.rotate:
            del p.refresh[rt]
        return 200, out

    def _device(self, f):
        p = self.provider
        if not f.get("scope"):
            return self._send(*_err("invalid_request", "scope required"))
        dc = "Oa2-DC-" + secrets.token_hex(8)
        with p.lock:
            p.devices[dc] = {"pending": p.pending, "slow": p.slow_downs,
                             "interval": p.device_interval, "last": None,
                             "scope": f["scope"], "polls": []}
        self._send(200, {"device_code": dc, "user_code": "WDJB-MJHT",
                         "verification_uri": p.url("/activate"),
                         "expires_in": 120,
                         "interval": p.device_interval})

    def _device_poll(self, f):
        p = self.provider
        d = p.devices.get(f.get("device_code", ""))
        if d is None:
            return _err("invalid_grant", "unknown device_code")
        now = time.time()
        d["polls"].append(now)
        last, d["last"] = d["last"], now
        if last is not None and now - last < d["interval"] - 0.05:
            d["interval"] += 5
            return _err("slow_down", "polled too fast")
        if d["pending"] > 0:
            d["pending"] -= 1
            return _err("authorization_pending", "not yet")
        if d["slow"] > 0:
            d["slow"] -= 1
            d["interval"] += 5
            return _err("slow_down", "slow down")
        del p.devices[f["device_code"]]
        return 200, p._issue(d["scope"])


def main(argv):
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--client-id", default="mailhaul-test")
    ap.add_argument("--lifetime", type=int, default=3600)
    a = ap.parse_args(argv)
    p = Provider(a.cert, a.key, client_id=a.client_id)
    p.lifetime = a.lifetime
    p.start(a.port)
    print(p.port, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        p.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
