#!/usr/bin/python3
"""fakegmail.py -- a local stand-in for the Gmail API, for mailhaul's tests.

    import fakegmail
    g = fakegmail.FakeGmail(cert, key, provider=p).start()  # HTTPS, 127.0.0.1
    g.url                      # https://127.0.0.1:PORT  (the target's api_url)
    ... g.messages ... g.violations ...
    g.stop()

Strict the way Google documents it (developers.google.com/gmail/api):
  - every request carries "Authorization: Bearer T"; T must be a live
    access token of the local OAuth2 provider (tests/oauth2/provider.py:
    provider.access, token -> expiry) or in the fixed list `tokens`;
    otherwise 401 as Google answers it.
  - GET  /gmail/v1/users/me/profile             users.getProfile
  - GET  /gmail/v1/users/me/labels              labels.list
  - POST /gmail/v1/users/me/labels              labels.create (JSON name;
                                                409 when the name exists,
                                                in any case)
  - GET  /gmail/v1/users/me/messages?q=rfc822msgid:ID[&includeSpamTrash=..]
                                                messages.list
  - POST /upload/gmail/v1/users/me/messages/import
        query: uploadType=multipart|resumable, internalDateSource=
        dateHeader|receivedTime, neverMarkSpam, processForCalendar
        (true|false); nothing else.
        multipart: Content-Type multipart/related; boundary=B; the body is
        exactly two parts, application/json metadata {"labelIds": [IDs]}
        then message/rfc822; Content-Length required.
        resumable: the JSON metadata with X-Upload-Content-Type:
        message/rfc822 and X-Upload-Content-Length: N -> 200 + Location
        (the session URI); then PUT the bytes to it (Content-Range
        "bytes a-b/N" when resuming), 308 + Range while incomplete, 200 +
        the message when complete; PUT with "Content-Range: bytes */N"
        and no body asks the status.
  - labelIds must be label IDs, not names (400 "Invalid label").

Everything that breaks these rules is answered 400 and appended to
`violations`, which a test asserts empty.  A request whose body the
client did not finish (it died mid-upload) is no violation: it is
dropped unanswered, as a server drops it, and counted in
`cut_requests`; a resumable PUT cut short keeps the bytes that came.  Stored imports: `messages`, a
list of dicts {id, raw (bytes as received), labelIds, params, upload}.

Faults a test sets as attributes:
  rate_every = N     every Nth import request answers 429 + Retry-After
  retry_after = S    the Retry-After value (seconds, default 1)
  reject_marker = b"X-Test-Gmail-400"  a message holding it gets 400
  fail_401_once      the next request gets 401 although its token is good
  fail_5xx = N       the next N import requests answer 503
  fail_403 = N       the next N import requests answer 403
                     insufficientPermissions (a token without the scope)
  break_put_at = K   the first resumable PUT's connection is closed after
                     K bytes were received (those bytes are kept)
  delay = S          sleep S seconds before answering an import
  drop_import_at = K the Kth multipart import (1 = the first) is stored,
                     then its connection closed without an answer (a
                     reply lost: the client cannot know it was applied)
  close_every = N    every Nth answer on a connection is its last: the
                     connection is closed after it without a
                     "Connection: close" (a server ending an idle
                     keep-alive connection)
Counted: `connections` (TCP connections accepted; a client that keeps
its connections alive makes one per pass).
"""
import email.parser
import http.server
import json
import os
import re
import secrets
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "oauth2"))
import provider  # noqa: E402  (tests/oauth2/provider.py: serve_https)

IMPORT = "/upload/gmail/v1/users/me/messages/import"
API = "/gmail/v1/users/me"

SYSTEM_LABELS = ["INBOX", "SPAM", "TRASH", "UNREAD", "STARRED", "IMPORTANT",
                 "SENT", "DRAFT", "CATEGORY_PERSONAL", "CATEGORY_SOCIAL",
                 "CATEGORY_PROMOTIONS", "CATEGORY_UPDATES", "CATEGORY_FORUMS"]


def _gerr(code, message, status, reason=None):
    e = {"code": code, "message": message, "status": status}
    if reason:
        e["errors"] = [{"message": message, "domain": "usageLimits"
                        if "Limit" in reason else "global", "reason": reason}]
    return {"error": e}


class FakeGmail:
    def __init__(self, cert, key, provider=None, tokens=(),
                 email_address="me@gmail.example"):
        self.cert, self.key = cert, key
        self.provider = provider
        self.tokens = set(tokens)
        self.email_address = email_address
        self.labels = [{"id": n, "name": n, "type": "system"}
                       for n in SYSTEM_LABELS]
        self.messages = []
        self.violations = []
        self.log = []               # (method, path, query dict, status)
        self.sessions = {}          # upload_id -> dict
        self.race_labels = set()    # created by "someone else" just
                                    # before our labels.create of them
        self.rate_every = 0
        self.retry_after = 1
        self.reject_marker = None
        self.fail_401_once = False
        self.fail_5xx = 0
        self.fail_403 = 0
        self.break_put_at = None
        self.delay = 0
        self.drop_import_at = None
        self.close_every = 0
        self.connections = 0
        self.cut_requests = 0       # bodies the client did not finish
        self.multipart_seen = 0
        self.imports = 0            # import requests seen
        self.lock = threading.Lock()
        self.httpd = None
        self.port = None

    def start(self, port=0):
        fake = self

        class H(Handler):
            gmail = fake
        self.httpd, self.port = provider.serve_https(H, self.cert, self.key,
                                                     port)
        return self

    stop = provider.Provider.stop

    @property
    def url(self):
        return "https://127.0.0.1:%d" % self.port

    def label_id(self, name):
        for l in self.labels:
            if l["name"] == name:
                return l["id"]
        return None

    def raws(self):
        return [m["raw"] for m in self.messages]

    def token_ok(self, t):
        if t in self.tokens:
            return True
        if self.provider is not None:
            exp = self.provider.access.get(t)
            return exp is not None and exp > time.time()
        return False

    def store(self, raw, meta, params, upload):
        ids = meta.get("labelIds", [])
        known = {l["id"] for l in self.labels}
        if not isinstance(ids, list) or any(i not in known for i in ids):
            return 400, _gerr(400, "Invalid label: %s" % ids, "INVALID_ARGUMENT",
                              "invalidArgument")
        if self.reject_marker and self.reject_marker in raw.split(b"\r\n\r\n")[0]:
            return 400, _gerr(400, "Invalid message: refused by the test",
                              "INVALID_ARGUMENT", "invalidArgument")
        mid = "%016x" % secrets.randbits(64)
        self.messages.append({"id": mid, "raw": bytes(raw), "labelIds": ids,
                              "params": params, "upload": upload})
        return 200, {"id": mid, "threadId": mid, "labelIds": ids}


class _Cut(Exception):
    """The client closed the connection before the whole body came."""


class Handler(http.server.BaseHTTPRequestHandler):
    gmail = None
    protocol_version = "HTTP/1.1"

    def handle_one_request(self):
        # A request cut short (the client died mid-body: the crash tests)
        # is dropped unanswered, as a real server drops it; it is not the
        # client breaking the protocol.
        try:
            super().handle_one_request()
        except _Cut:
            self.close_connection = True
            with self.gmail.lock:
                self.gmail.cut_requests += 1

    def setup(self):
        super().setup()
        self.answers = 0
        with self.gmail.lock:
            self.gmail.connections += 1

    def log_message(self, fmt, *args):
        pass

    def _send(self, status, obj=None, headers=None):
        body = json.dumps(obj).encode() if obj is not None else b""
        self.send_response(status)
        if obj is not None:
            self.send_header("Content-Type", "application/json; charset=UTF-8")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.answers += 1
        if self.gmail.close_every and self.answers % self.gmail.close_every == 0:
            self.close_connection = True
        with self.gmail.lock:
            self.gmail.log.append((self.command, self._path, self._q, status))

    def _violation(self, what):
        with self.gmail.lock:
            self.gmail.violations.append("%s %s: %s" % (self.command, self.path,
                                                        what))
        self._send(400, _gerr(400, what, "INVALID_ARGUMENT", "badRequest"))

    def _body(self, limit=None, partial=False):
        """The request body (None without a Content-Length); up to limit
        bytes.  A body the client did not finish raises _Cut, unless
        partial (a resumable PUT keeps what came)."""
        n = self.headers.get("Content-Length")
        if n is None or not n.isdigit():
            return None
        n = int(n)
        out = bytearray()
        while len(out) < n:
            if limit is not None and len(out) >= limit:
                break
            want = min(1 << 16, n - len(out))
            if limit is not None:
                want = min(want, limit - len(out))
            chunk = self.rfile.read(want)
            if not chunk:
                if partial:
                    break
                raise _Cut()
            out += chunk
        return out

    def _auth(self):
        g = self.gmail
        a = self.headers.get("Authorization", "")
        with g.lock:
            once = g.fail_401_once
            g.fail_401_once = False
        if once or not a.startswith("Bearer ") or not g.token_ok(a[7:]):
            self._body()
            self._send(401, _gerr(401, "Request had invalid authentication "
                                  "credentials.", "UNAUTHENTICATED",
                                  "authError"),
                       {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'})
            return False
        return True

    def _parse(self):
        u = urllib.parse.urlsplit(self.path)
        self._path = u.path
        try:
            self._q = dict(urllib.parse.parse_qsl(u.query, strict_parsing=True)) \
                if u.query else {}
        except ValueError:
            self._q = None

    def do_GET(self):
        self._parse()
        g = self.gmail
        if self._q is None:
            return self._violation("bad query string")
        if not self._auth():
            return
        if self._path == API + "/profile":
            return self._send(200, {"emailAddress": g.email_address,
                                    "messagesTotal": len(g.messages),
                                    "threadsTotal": len(g.messages),
                                    "historyId": "1"})
        if self._path == API + "/labels":
            return self._send(200, {"labels": g.labels})
        if self._path == API + "/messages":
            return self._list()
        return self._send(404, _gerr(404, "Not Found", "NOT_FOUND", "notFound"))

    def _list(self):
        g = self.gmail
        extra = set(self._q) - {"q", "includeSpamTrash", "maxResults", "pageToken"}
        if extra:
            return self._violation("unknown parameters %s" % sorted(extra))
        m = re.fullmatch(r"rfc822msgid:(\S+)", self._q.get("q", ""))
        if not m:
            return self._violation("only q=rfc822msgid:ID is expected, got %r"
                                   % self._q.get("q"))
        want = m.group(1)
        if want.startswith("<"):
            return self._violation("the Message-ID is searched without <>")
        found = []
        for s in g.messages:
            head = s["raw"].split(b"\r\n\r\n")[0]
            msg = email.parser.BytesHeaderParser().parsebytes(head + b"\r\n\r\n")
            v = (msg.get("Message-ID") or "").strip()
            if v.strip("<>") == want:
                found.append({"id": s["id"], "threadId": s["id"]})
        out = {"resultSizeEstimate": len(found)}
        if found:
            out["messages"] = found
        return self._send(200, out)

    def do_POST(self):
        self._parse()
        if self._q is None:
            return self._violation("bad query string")
        if not self._auth():
            return
        if self._path == API + "/labels":
            return self._create_label()
        if self._path == IMPORT:
            return self._import()
        self._body()
        return self._send(404, _gerr(404, "Not Found", "NOT_FOUND", "notFound"))

    def _create_label(self):
        g = self.gmail
        if not self.headers.get("Content-Type", "").startswith("application/json"):
            return self._violation("labels.create takes JSON")
        try:
            body = json.loads(self._body() or b"")
        except ValueError:
            return self._violation("labels.create: not JSON")
        name = body.get("name")
        if not isinstance(name, str) or not name:
            return self._violation("labels.create: no name")
        if name in g.race_labels:
            # another client creates it first: ours conflicts
            g.race_labels.discard(name)
            g.labels.append({"id": "Label_%d" % (len(g.labels) + 1),
                             "name": name, "type": "user"})
        # Gmail's label names are unique without regard to case
        if any(l["name"].lower() == name.lower() for l in g.labels):
            return self._send(409, _gerr(409, "Label name exists or conflicts",
                                         "ALREADY_EXISTS", "duplicate"))
        lab = {"id": "Label_%d" % (len(g.labels) + 1), "name": name,
               "type": "user"}
        for k in ("labelListVisibility", "messageListVisibility"):
            if k in body:
                lab[k] = body[k]
        g.labels.append(lab)
        return self._send(200, lab)

    def _import_params(self):
        q = self._q
        extra = set(q) - {"uploadType", "internalDateSource", "neverMarkSpam",
                          "processForCalendar", "deleted"}
        if extra:
            return "unknown parameters %s" % sorted(extra)
        if q.get("uploadType") not in ("multipart", "resumable"):
            return "uploadType must be multipart or resumable"
        if q.get("internalDateSource", "dateHeader") not in ("dateHeader",
                                                            "receivedTime"):
            return "bad internalDateSource"
        for k in ("neverMarkSpam", "processForCalendar"):
            if q.get(k, "false") not in ("true", "false"):
                return "bad %s" % k
        return None

    def _fault(self):
        """The rate limit and 5xx faults of an import request; True when
        an answer was sent."""
        g = self.gmail
        with g.lock:
            g.imports += 1
            n = g.imports
            five = g.fail_5xx > 0
            if five:
                g.fail_5xx -= 1
            forbid = g.fail_403 > 0
            if forbid:
                g.fail_403 -= 1
        if g.rate_every and n % g.rate_every == 0:
            self._body()
            self._send(429, _gerr(429, "Too many concurrent requests for user",
                                  "RESOURCE_EXHAUSTED", "rateLimitExceeded"),
                       {"Retry-After": str(g.retry_after)})
            return True
        if forbid:
            self._body()
            self._send(403, _gerr(403, "Request had insufficient authentication "
                                  "scopes.", "PERMISSION_DENIED",
                                  "insufficientPermissions"))
            return True
        if five:
            self._body()
            self._send(503, _gerr(503, "The service is currently unavailable.",
                                  "UNAVAILABLE", "backendError"))
            return True
        return False

    def _import(self):
        g = self.gmail
        bad = self._import_params()
        if bad:
            self._body()
            return self._violation(bad)
        if self._fault():
            return
        if g.delay:
            time.sleep(g.delay)
        if self._q["uploadType"] == "multipart":
            return self._multipart()
        return self._resumable_start()

    def _multipart(self):
        g = self.gmail
        ct = self.headers.get("Content-Type", "")
        m = re.fullmatch(r'multipart/related;\s*boundary="?([^";]+)"?', ct)
        if not m:
            self._body()
            return self._violation("Content-Type must be multipart/related "
                                   "with a boundary, got %r" % ct)
        b = m.group(1).encode()
        body = self._body()
        if body is None:
            return self._violation("Content-Length required")
        if len(body) > 5 * 1024 * 1024 + 65536:
            return self._violation("a multipart upload above 5 MB")
        start = b"--" + b + b"\r\n"
        end = b"\r\n--" + b + b"--"
        if not body.startswith(start):
            return self._violation("the body does not start with the boundary")
        tail = body.rfind(end)
        if tail < 0 or body[tail + len(end):] not in (b"", b"\r\n"):
            return self._violation("the body does not end with the close "
                                   "delimiter")
        parts = bytes(body[len(start):tail]).split(b"\r\n--" + b + b"\r\n")
        if len(parts) != 2:
            return self._violation("expected 2 parts, got %d (a boundary in "
                                   "the message?)" % len(parts))
        h1, _, js = parts[0].partition(b"\r\n\r\n")
        h2, _, raw = parts[1].partition(b"\r\n\r\n")
        if not h1.lower().startswith(b"content-type: application/json"):
            return self._violation("part 1 must be application/json")
        if h2.lower() != b"content-type: message/rfc822":
            return self._violation("part 2 must be message/rfc822, got %r" % h2)
        try:
            meta = json.loads(js)
        except ValueError:
            return self._violation("part 1 is not JSON")
        with g.lock:
            st, obj = g.store(raw, meta, dict(self._q), "multipart")
            g.multipart_seen += 1
            drop = g.multipart_seen == g.drop_import_at
        if drop:
            self.close_connection = True
            self.wfile.flush()
            return None
        return self._send(st, obj)

    def _resumable_start(self):
        g = self.gmail
        if self.headers.get("X-Upload-Content-Type") != "message/rfc822":
            self._body()
            return self._violation("X-Upload-Content-Type: message/rfc822 "
                                   "required")
        n = self.headers.get("X-Upload-Content-Length", "")
        if not n.isdigit():
            self._body()
            return self._violation("X-Upload-Content-Length required")
        if not self.headers.get("Content-Type", "").startswith("application/json"):
            self._body()
            return self._violation("the metadata must be application/json")
        try:
            meta = json.loads(self._body() or b"")
        except ValueError:
            return self._violation("the metadata is not JSON")
        uid = secrets.token_hex(8)
        with g.lock:
            g.sessions[uid] = {"n": int(n), "data": bytearray(), "meta": meta,
                               "params": dict(self._q), "done": None}
        loc = "%s%s?uploadType=resumable&upload_id=%s" % (g.url, IMPORT, uid)
        return self._send(200, None, {"Location": loc})

    def do_PUT(self):
        self._parse()
        g = self.gmail
        if self._q is None or self._path != IMPORT:
            self._body()
            return self._violation("PUT only to a session URI")
        if not self._auth():
            return
        s = g.sessions.get(self._q.get("upload_id", ""))
        if s is None:
            self._body()
            return self._send(404, _gerr(404, "No such upload", "NOT_FOUND",
                                         "notFound"))
        cr = self.headers.get("Content-Range")
        n = s["n"]
        if cr is not None and cr == "bytes */%d" % n:
            self._body()
            return self._status(s)
        start = 0
        if cr is not None:
            m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", cr)
            if not m or int(m.group(3)) != n or int(m.group(2)) != n - 1:
                self._body()
                return self._violation("bad Content-Range %r" % cr)
            start = int(m.group(1))
        if start != len(s["data"]):
            self._body()
            return self._violation("resumed at %d, the session has %d"
                                   % (start, len(s["data"])))
        clen = self.headers.get("Content-Length", "")
        if not clen.isdigit() or int(clen) != n - start:
            self._body()
            return self._violation("Content-Length %r, expected %d"
                                   % (clen, n - start))
        if self.headers.get("Content-Type", "message/rfc822") != "message/rfc822":
            self._body()
            return self._violation("the bytes must be message/rfc822")
        brk = None
        with g.lock:
            if g.break_put_at is not None:
                brk, g.break_put_at = g.break_put_at, None
        got = self._body(limit=brk, partial=True)
        s["data"] += got
        if brk is not None:
            self.close_connection = True
            self.connection.shutdown(2)
            return
        return self._status(s)

    def _status(self, s):
        g = self.gmail
        if s["done"] is not None:
            return self._send(*s["done"])
        if len(s["data"]) < s["n"]:
            h = {"Range": "bytes=0-%d" % (len(s["data"]) - 1)} if s["data"] else {}
            return self._send(308, None, h)
        with g.lock:
            s["done"] = g.store(s["data"], s["meta"], s["params"], "resumable")
        return self._send(*s["done"])
