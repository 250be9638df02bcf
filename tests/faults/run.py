#!/usr/bin/python3
"""run.py -- plays one fault scenario against the mailhaul binary.

    MAILHAUL=build/mailhaul tests/faults/run.py tests/faults/scenarios/X.json

A scenario (JSON) names a source server and a target server (each a
faultd.py SPEC, see faultd.py), the config keys that differ from the
defaults, and passes of mailhaul to run, each with what must hold after
it.  Keys of a pass (all optional but args):
  args        mailhaul arguments (default ["sync"])
  env         extra environment
  age_db      [SQL, ...]: run on the state DB before the pass, to make
              time pass for what it recorded (failures a day old)
  rc          list of allowed exit statuses
  err_re / out_re           regexes that must match stdout+stderr (the
                            failure line goes to stdout) / stdout (a
                            string, or a list of them that all must)
  err_not_re / out_not_re   regexes that must not
  accepted    {id: n}: target deliveries the target accepted (all
              replies 2xx), cumulative, exactly these counts; ids absent
              are 0
  received_max  no message id reached the target more than this many
              times (cumulative)
  rcpt_accepted {id: {recipient: n}}: per message, the recipients whose
              reply after the data was 2xx and how often (cumulative),
              exactly; a message absent got none
  left        ids still on the source (deletions a QUIT committed are gone)
  committed   ids whose deletion was committed on the source (cumulative)
  hidden      ids the source no longer lists (gmail_pop: served in a session
              that ended with QUIT)
  no_dele     true: the source never saw a DELE
  db          [[SQL, expected]]: read-only queries on the state DB; the
              first column of the first row (or null when no row)
  source_re / source_not_re   regexes on the source's transcripts (all
              connections joined by newlines; lines "C cmd" and "* event")
  target_re / target_not_re   the same for the target
  target_count  [[regex, n]]: the regex matches exactly n lines of the
              target's transcripts
  body_tail   {id: text}: every copy of message id the target received
              ends with text (latin-1; the target keeps bodies:
              keep_bodies), and there is one
  chunks      {id: [sizes]}: the BDAT chunk sizes of the last copy of
              message id the target received ([] after DATA)
  no_target   true: the target saw no connection at all
  target_conns  the number of connections the target saw
  source_conns  the number of connections (logins) the source saw, all
              passes so far
  db_invariants false: skip the checks below (a pass that records without
              delivering, e.g. mark-seen)
  account     config keys of the account for this pass only, over the
              scenario's (null removes a key)
After every pass, unless db_invariants is false, the state DB must agree
with the servers (messages matched by their Message-ID): every message
whose deletion the source committed is recorded delivered (I1); every
message recorded delivered was accepted by the target (all recipients,
some pass so far); every message the target accepted is recorded
delivered, or, when some recipients refused it, recorded failed with the
recipients that have it in delivered_to.
Every server binds 127.0.0.1 and dies after a bounded lifetime; every run
of mailhaul has a timeout.  Prints what it checked; exit 0 or 1.
"""
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PASSWORD = "Fault-Pw-7q3Z"      # distinctive: grepped for in every output
TARGET_PASSWORD = "Tgt-Pw-9k2W"
MAILHAUL_TIMEOUT = 60


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)
    print("  ok: %s" % what.split("\n")[0][:150])


class FaultServer:
    def __init__(self, tmp, name, spec, certs, lifetime=150):
        self.state = os.path.join(tmp, name + ".state.json")
        specf = os.path.join(tmp, name + ".spec.json")
        with open(specf, "w") as f:
            json.dump(spec, f)
        self.p = subprocess.Popen(
            ["/usr/bin/python3", os.path.join(HERE, "faultd.py"), specf,
             self.state, "--certs", certs, "--lifetime", str(lifetime)],
            stdout=subprocess.PIPE, stderr=open(os.path.join(tmp, name + ".log"), "w"))
        line = self.p.stdout.readline().decode()
        if not line.startswith("PORT "):
            raise RuntimeError("%s did not start: %r" % (name, line))
        self.port = int(line.split()[1])

    def read(self):
        with open(self.state) as f:
            return json.load(f)

    def settled(self, limit=5.0):
        """Waits (at most limit seconds) until every connection has ended
        or stalls on purpose: a client may close without waiting for the
        last answer (IMAP LOGOUT), and the server logs its last command
        after the client has exited."""
        end = time.monotonic() + limit
        while time.monotonic() < end:
            conns = self.read()["connections"]
            if all(c.get("ended") or any(t.startswith("* stall")
                                         for t in c["transcript"])
                   for c in conns):
                return
            time.sleep(0.05)

    def transcript(self):
        self.settled()
        st = self.read()
        out = []
        for c in st["connections"]:
            out.append("# connection %d tls=%s login=%s plaintext_login=%s quit=%s"
                       % (c["n"], c["tls"], c["login"], c["plaintext_login"], c["quit"]))
            out += c["transcript"] + ["* " + e for e in c["events"]]
        return "\n".join(out)

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def ini(section, keys):
    return "[%s]\n" % section + "".join(
        "%s = %s\n" % (k, v) for k, v in keys.items() if v is not None) + "\n"


def make_config(tmp, sc, src, tgt, certs, pass_acc=None):
    acc = {"protocol": "pop3", "host": "localhost", "user": "joe",
           "password": PASSWORD, "target": "t", "timeout": "5s"}
    sspec = sc.get("source", {})
    if sspec.get("proto") == "imap":
        acc["protocol"] = "imap"
    tls = sspec.get("tls", "none")
    acc["tls"] = tls
    if tls == "none":
        acc["allow_plaintext_auth"] = "yes"
    else:
        acc["ca_file"] = os.path.join(certs, "ca.pem")
    acc["port"] = src.port if src else 9
    acc.update(sc.get("account", {}))
    acc.update(pass_acc or {})
    tgt_keys = {"type": sc.get("target", {}).get("proto", "smtp"),
                "host": "localhost", "port": tgt.port if tgt else 9,
                "tls": sc.get("target", {}).get("tls", "none"),
                "recipient": "rcpt@example.org"}
    if tgt_keys["tls"] != "none":
        tgt_keys["ca_file"] = os.path.join(certs, "ca.pem")
    if tgt_keys["type"] == "imap":      # APPEND: a login, no recipient
        del tgt_keys["recipient"]
        tgt_keys.update({"user": "joe", "password": TARGET_PASSWORD})
        if tgt_keys["tls"] == "none":
            tgt_keys["allow_plaintext_auth"] = "yes"
    tgt_keys.update(sc.get("target_config", {}))
    text = ini("general", {"state": os.path.join(tmp, "state", "state.db"),
                           "timeout": "5s"})
    text += ini("target:t", tgt_keys) + ini("account:acct", acc)
    text = text.replace("@CERTS@", certs)
    path = os.path.join(tmp, "mailhaul.ini")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def run_mailhaul(tmp, cfg, args, env):
    e = dict(os.environ)
    for k, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_STATE_HOME", "xstate"),
                   ("XDG_CACHE_HOME", "cache"), ("XDG_RUNTIME_DIR", "run")):
        e[k] = os.path.join(tmp, "xdg", sub)
        os.makedirs(e[k], mode=0o700, exist_ok=True)
    e.update(env or {})
    cmd = [os.environ["MAILHAUL"], "-v", "-c", cfg] + list(args)
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=MAILHAUL_TIMEOUT)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as ex:
        rc, out, err = -9, ex.stdout or b"", (ex.stderr or b"") + b"\n(killed: timeout)"
    return (rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"),
            time.monotonic() - t0)


def db_value(path, sql):
    if not os.path.exists(path):
        return "<no state db>"
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=5)
    try:
        row = con.execute(sql).fetchone()
    finally:
        con.close()
    return None if row is None else row[0]


def accepted_counts(tgt):
    n = {}
    for r in tgt.read()["received"] if tgt else []:
        reps = r["replies"]
        if isinstance(reps, list) and reps and all(
                x.startswith("2") or x.startswith("OK") for x in reps):
            n[str(r["id"])] = n.get(str(r["id"]), 0) + 1
    return n


def rcpt_accepted_counts(tgt):
    """{id: {rcpt: n}}: LMTP has a reply per recipient, SMTP one for all."""
    n = {}
    for r in tgt.read()["received"] if tgt else []:
        reps = r["replies"]
        if not isinstance(reps, list):
            continue
        for k, rcpt in enumerate(r["rcpts"]):
            rep = reps[k] if len(reps) == len(r["rcpts"]) else reps[0]
            if rep.startswith("2"):
                rcpt = rcpt.strip("<>")
                d = n.setdefault(str(r["id"]), {})
                d[rcpt] = d.get(rcpt, 0) + 1
    return n


def received_counts(tgt):
    n = {}
    for r in tgt.read()["received"] if tgt else []:
        n[str(r["id"])] = n.get(str(r["id"]), 0) + 1
    return n


def fault_id_of(message_id):
    m = re.match(r"<fault-(\d+)@faultd\.test>$", message_id or "")
    return int(m.group(1)) if m else None


def db_rows(path, sql):
    if not os.path.exists(path):
        return []
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=5)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def check_db_invariants(src, tgt, dbpath, ctx):
    rows = db_rows(dbpath, "SELECT message_id, state FROM messages")
    delivered = {fault_id_of(m) for m, st in rows if st == 1}
    delivered.discard(None)
    partial = {fault_id_of(m) for (m,) in db_rows(
        dbpath, "SELECT m.message_id FROM delivered_to d JOIN messages m"
        " USING (source_id, uidvalidity, uid)")}
    accepted = {int(i) for i in accepted_counts(tgt)} if tgt else set()
    some = {int(i) for i in rcpt_accepted_counts(tgt)} if tgt else set()
    if src is not None:
        committed = set(src.read()["committed"])
        check(committed <= delivered,
              "I1: every deletion committed on the source is recorded "
              "delivered (committed %s, delivered %s)\n%s"
              % (sorted(committed), sorted(delivered), ctx))
    if tgt is not None:
        check(delivered <= accepted,
              "every message recorded delivered was accepted by the target "
              "(delivered %s, accepted %s)\n%s"
              % (sorted(delivered), sorted(accepted), ctx))
        check(some <= delivered | partial,
              "every message the target accepted (for some recipients) is "
              "recorded delivered or partly delivered (accepted %s, "
              "delivered %s, partial %s)\n%s"
              % (sorted(some), sorted(delivered), sorted(partial), ctx))


def check_pass(k, ps, rc, out, err, src, tgt, dbpath):
    ctx = "pass %d: rc %d\n--- stdout\n%s--- stderr\n%s" % (k, rc, out, err)
    if "rc" in ps:
        check(rc in ps["rc"], "exit status %d in %s\n%s" % (rc, ps["rc"], ctx))
    for key, text in (("err_re", out + err), ("out_re", out)):
        pats = ps.get(key, [])
        for pat in [pats] if isinstance(pats, str) else pats:
            check(re.search(pat, text, re.I | re.M),
                  "%s /%s/ matches\n%s" % (key, pat, ctx))
    for key, text in (("err_not_re", out + err), ("out_not_re", out)):
        if key in ps:
            check(not re.search(ps[key], text, re.I | re.M),
                  "%s /%s/ does not match\n%s" % (key, ps[key], ctx))
    check(PASSWORD not in out + err and TARGET_PASSWORD not in out + err,
          "no password in the output")
    if "accepted" in ps:
        got = accepted_counts(tgt)
        want = {str(k2): v for k2, v in ps["accepted"].items() if v}
        check(got == want, "accepted by the target %s == %s\n%s" % (got, want, ctx))
    if "rcpt_accepted" in ps:
        got = rcpt_accepted_counts(tgt)
        want = {str(k2): v for k2, v in ps["rcpt_accepted"].items() if v}
        check(got == want, "accepted per recipient %s == %s\n%s"
              % (got, want, ctx))
    if "received_max" in ps:
        got = received_counts(tgt)
        check(all(v <= ps["received_max"] for v in got.values()),
              "each message reached the target at most %d times: %s"
              % (ps["received_max"], got))
    if src is not None:
        # what the server did after its last answer (an expunge takes
        # effect after its OK went out) is in its state once it has
        # read the client's last command
        src.settled()
        st = src.read()
        if "left" in ps:
            check(sorted(st["left"]) == sorted(ps["left"]),
                  "left on the source %s == %s\n%s\n%s" % (st["left"], ps["left"],
                                                          src.transcript(), ctx))
        if "hidden" in ps:
            check(sorted(st["hidden"]) == sorted(ps["hidden"]),
                  "hidden by the server (gmail_pop) %s == %s\n%s"
                  % (st["hidden"], ps["hidden"], ctx))
        if "committed" in ps:
            check(sorted(st["committed"]) == sorted(ps["committed"]),
                  "committed deletions %s == %s" % (st["committed"], ps["committed"]))
        if ps.get("no_dele"):
            dele = [d for c in st["connections"] for d in c["dele"]]
            check(not dele, "the source saw no DELE (saw %s)" % dele)
        tr = src.transcript()
        check(PASSWORD not in tr.replace("PASS <password>", ""),
              "the source transcript holds no password in the clear")
        for r in ps.get("source_re", []):
            check(re.search(r, tr, re.M), "source transcript /%s/\n%s" % (r, tr))
        for r in ps.get("source_not_re", []):
            check(not re.search(r, tr, re.M), "source transcript not /%s/\n%s" % (r, tr))
        if "source_conns" in ps:
            nconn = len(st["connections"])
            check(nconn == ps["source_conns"], "source connections %d == %d\n%s"
                  % (nconn, ps["source_conns"], tr))
    if tgt is not None:
        tr = tgt.transcript()
        for r in ps.get("target_re", []):
            check(re.search(r, tr, re.M), "target transcript /%s/\n%s" % (r, tr))
        for r in ps.get("target_not_re", []):
            check(not re.search(r, tr, re.M), "target transcript not /%s/\n%s" % (r, tr))
        for r, n in ps.get("target_count", []):
            got = len(re.findall(r, tr, re.M))
            check(got == n, "target transcript /%s/ %d times == %d\n%s"
                  % (r, got, n, tr))
        recs = tgt.read()["received"]
        for i, tail in ps.get("body_tail", {}).items():
            bodies = [x.get("body") for x in recs if str(x["id"]) == i]
            check(bodies and all(b is not None and b.endswith(tail)
                                 for b in bodies),
                  "message %s arrived ending with %r: %r" % (
                      i, tail, [b[-len(tail) - 20:] for b in bodies if b]))
        for i, sizes in ps.get("chunks", {}).items():
            got = [x.get("chunks") for x in recs if str(x["id"]) == i]
            check(got and got[-1] == sizes, "message %s came in chunks "
                  "%s == %s" % (i, got[-1:] , sizes))
        nconn = len(tgt.read()["connections"])
        if ps.get("no_target"):
            check(nconn == 0, "the target saw no connection (saw %d)" % nconn)
        if "target_conns" in ps:
            check(nconn == ps["target_conns"], "target connections %d == %d"
                  % (nconn, ps["target_conns"]))
    if ps.get("db_invariants", True):
        check_db_invariants(src, tgt, dbpath, ctx)
    for sql, want in ps.get("db", []):
        got = db_value(dbpath, sql)
        check(got == want, "db: %s -> %r == %r" % (sql, got, want))
    if os.path.exists(dbpath):
        with open(dbpath, "rb") as f:
            check(PASSWORD.encode() not in f.read(), "no password in the state DB")


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: run.py SCENARIO.json\n")
        return 64
    with open(argv[1]) as f:
        sc = json.load(f)
    name = os.path.splitext(os.path.basename(argv[1]))[0]
    print("scenario %s: %s" % (name, sc.get("doc", "")))
    tmp = tempfile.mkdtemp(prefix="mh-fault-", dir="/tmp")
    certs = os.path.join(tmp, "certs")
    os.mkdir(certs)
    servers = []
    ok = False
    try:
        subprocess.run(["sh", os.path.join(HERE, "..", "unit", "net", "mkcerts.sh"), certs], check=True,
                       timeout=60)
        src = tgt = None
        if "source" in sc:
            sspec = dict(sc["source"])
            sspec.setdefault("password", PASSWORD)
            src = FaultServer(tmp, "source", sspec, certs)
            servers.append(src)
        if "target" in sc:
            tspec = dict(sc["target"])
            tspec.setdefault("password", TARGET_PASSWORD)
            tgt = FaultServer(tmp, "target", tspec, certs)
            servers.append(tgt)
        cfg = make_config(tmp, sc, src, tgt, certs)
        dbpath = os.path.join(tmp, "state", "state.db")
        for k, ps in enumerate(sc["passes"], 1):
            if ps.get("sleep"):
                time.sleep(ps["sleep"])
            if ps.get("age_db"):
                con = sqlite3.connect(dbpath, timeout=5)
                try:
                    for sql in ps["age_db"]:
                        con.execute(sql)
                    con.commit()
                finally:
                    con.close()
            cfg = make_config(tmp, sc, src, tgt, certs, ps.get("account"))
            rc, out, err, secs = run_mailhaul(tmp, cfg, ps.get("args", ["sync"]),
                                              ps.get("env"))
            print("pass %d: mailhaul %s -> %d in %.1f s" % (
                k, " ".join(ps.get("args", ["sync"])), rc, secs))
            if "max_secs" in ps:
                check(secs <= ps["max_secs"], "took %.1f s <= %s s" % (secs, ps["max_secs"]))
            check_pass(k, ps, rc, out, err, src, tgt, dbpath)
        ok = True
    except Fail as e:
        print("FAIL: %s" % e)
        for s, nm in ((s, n) for s, n in zip(servers, ["first", "second"])):
            print("---- server %s transcript\n%s" % (nm, s.transcript()))
    finally:
        for s in servers:
            s.stop()
        if os.environ.get("MH_KEEP"):
            print("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("PASS" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
