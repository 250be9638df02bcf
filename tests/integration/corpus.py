"""corpus.py -- deterministic RFC 5322 test messages with tricky content.

Adapted from ../shared/bench/gen-corpus (the project carries its own copy).
Python stdlib only; same seed + same options => byte-identical messages.

    import corpus
    msgs = corpus.generate(40, seed=3)          # list of dicts, see generate()
    one = corpus.tricky()                        # {trick name: raw bytes}
    big = corpus.big_message(20 * 1024 * 1024)   # one ~20 MiB message

Tricks (each present at least once when n >= len(TRICKS), then on ~12% of
the other messages):
  dot-lines     lines ".", "..", ".x", "...", " .", body ending in "."
  nul-bytes     NUL bytes inside a body line
  long-lines    lines of 999, 1000, 4096, 8191-8193, 20000, 100000 bytes
  utf8-8bit     raw UTF-8 body and Subject, Content-Transfer-Encoding: 8bit
  crlf-file     file stored with CRLF line ends (default is LF)
  mixed-eol     CRLF file with some bare-LF lines
  bare-cr       a lone CR inside a line
  no-final-eol  file does not end with a newline
  from-lines    body lines starting with "From " and ">From "
  dup-msgid     Message-ID of an earlier message (different content)
  no-msgid      no Message-ID header
  empty-body    header, blank line, nothing else
  no-body       header only, no blank line at all
  long-header   a Subject folded over many lines / a 2000-byte References
Dovecot serves every message with CRLF line ends (bare LF becomes CRLF, a
final CRLF is added when missing): compare deliveries against
mh.crlf(original), after mh.strip_received().  Every message carries
"X-Corpus-Id: <seed>-<i>" to pair a delivered copy with its original.
"""
import argparse
import base64
import hashlib
import os
import random
import time

TRICKS = ["dot-lines", "nul-bytes", "long-lines", "utf8-8bit", "crlf-file", "mixed-eol",
          "bare-cr", "no-final-eol", "from-lines", "dup-msgid", "no-msgid",
          "empty-body", "no-body", "long-header"]

WORDS = ("the of and to in is that for it as was with be by on not he this are or "
         "his from at which but have an they you were her she there been one all "
         "would their we him has more when will if no out so said what up its about "
         "into than them can only other new some could time these two may then do "
         "first any my now such like our over man me even most made after also did "
         "many before must through back years where much your way well down should "
         "because each just those people how too little state good very make world "
         "still own see men work long get here between both life being under never "
         "mailbox server delivery message retrieve pipeline invoice meeting report "
         "quarterly attached please regards thanks tomorrow schedule budget review").split()
UWORDS = ["naïve", "café", "Größe", "Ελληνικά", "日本語", "中文", "русский",
          "עברית", "العربية", "emoji😀", "façade", "smørrebrød", "Zürich", "€100"]
NAMES = ["Alice Example", "Bob Builder", "Carol Singer", "Dave Null",
         "Eve Listener", "Mallory Middle", "Trent Trusted", "Peggy Prover"]

BASE_DATE = 1700000000  # fixed: the corpus must not depend on today's date


def rfc2822_date(t):
    return time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(t))


def text_lines(rng, nbytes, utf8=False):
    out, total = [], 0
    while total < nbytes:
        n = rng.randint(6, 13)
        if utf8:
            ws = [rng.choice(UWORDS) if rng.random() < 0.3 else rng.choice(WORDS) for _ in range(n)]
        else:
            ws = rng.choices(WORDS, k=n)
        line = " ".join(ws)
        if rng.random() < 0.08:
            line = ""
        out.append(line)
        total += len(line.encode()) + 1
    return out


def canonical(raw):
    """(body, loose) canonical forms of a message's body."""
    norm = raw.replace(b"\r\n", b"\n")
    k = norm.find(b"\n\n")
    if k < 0:
        body = b""
    else:
        body = norm[k + 2:]
    if body and not body.endswith(b"\n"):
        body += b"\n"
    loose = b"\n".join(l.rstrip(b" \t\r") for l in body.split(b"\n")).rstrip(b"\n")
    return body, loose


def build(rng, seed, i, tricks, profile, msgids, huge_bytes=0):
    """Return (raw bytes, message_id or None)."""
    t = BASE_DATE + i * 97 + rng.randint(0, 60)
    frm = rng.choice(NAMES)
    to = rng.choice(NAMES)
    utf8 = "utf8-8bit" in tricks
    subj_words = " ".join(rng.choices(WORDS, k=rng.randint(2, 8)))
    if utf8:
        subj_words += " " + " ".join(rng.sample(UWORDS, 3))
    hdr = []
    hdr.append("Return-Path: <%s@example.org>" % frm.split()[0].lower())
    hdr.append("Received: from mx%d.example.net (mx%d.example.net [192.0.2.%d])\n"
               "\tby mail.example.org with ESMTPS id %08x\n\tfor <%s@example.org>; %s"
               % (i % 7, i % 7, i % 250 + 1, rng.getrandbits(32), to.split()[0].lower(),
                  rfc2822_date(t + 5)))
    hdr.append("Date: " + rfc2822_date(t))
    hdr.append('From: "%s" <%s@example.net>' % (frm, frm.split()[0].lower()))
    hdr.append('To: "%s" <%s@example.org>' % (to, to.split()[0].lower()))
    if "long-header" in tricks:
        parts = [subj_words] + [" ".join(rng.choices(WORDS, k=8)) for _ in range(12)]
        hdr.append("Subject: " + "\n ".join(parts))
        hdr.append("References: " + "\n\t".join("<%016x.%d@example.net>" % (rng.getrandbits(64), k)
                                                  for k in range(60)))
    else:
        hdr.append("Subject: " + subj_words)
    msgid = None
    if "no-msgid" not in tricks:
        if "dup-msgid" in tricks and msgids:
            msgid = msgids[rng.randrange(len(msgids))]
        else:
            msgid = "<corpus.%d.%d.%08x@example.net>" % (seed, i, rng.getrandbits(32))
        hdr.append("Message-ID: " + msgid)
    hdr.append("X-Corpus-Id: %d-%d" % (seed, i))
    hdr.append("MIME-Version: 1.0")

    # ---- body -------------------------------------------------------------
    if huge_bytes:
        target = huge_bytes
        attach = huge_bytes
    elif profile == "small":
        target = rng.randint(600, 2500)
        attach = 0
    else:
        if rng.random() < 0.05:
            attach = int(200 * 1024 * (10 ** rng.uniform(0, 1)))   # 200 KB .. 2 MB
            target = rng.randint(1000, 6000)
        else:
            attach = 0
            target = int(2 * 1024 * (25 ** rng.uniform(0, 1)))    # 2 KB .. 50 KB, log-uniform
            target = max(300, target - 900)                        # headers are ~900 bytes

    lines = text_lines(rng, target if not attach else min(target, 4000), utf8)
    if "dot-lines" in tricks:
        for k, s in enumerate([".", "..", ".hidden line", "...", " .", ".\t", ". .", "..."]):
            lines.insert(rng.randrange(len(lines) + 1), s)
        lines.append(".")          # body ends with a lone dot
    if "long-lines" in tricks:
        for n in (999, 1000, 4096, 8191, 8192, 8193, 20000, 100000):
            ws = []
            total = 0
            while total < n:
                w = rng.choice(WORDS)
                ws.append(w)
                total += len(w) + 1
            s = " ".join(ws)[:n]
            s = s[:-1] + "X"
            lines.insert(rng.randrange(len(lines) + 1), s)
    if "from-lines" in tricks:
        lines.insert(rng.randrange(len(lines) + 1), "From here on, we talk about mbox quoting")
        lines.insert(rng.randrange(len(lines) + 1), ">From the other side")
        lines.insert(0, "From the start of the body")
    if "nul-bytes" in tricks:
        k = rng.randrange(len(lines) + 1)
        lines.insert(k, "before a NUL\0after the NUL, and two more \0\0 here")
    if "bare-cr" in tricks:
        k = rng.randrange(len(lines) + 1)
        lines.insert(k, "before a lone CR\rafter the lone CR")

    charset = "utf-8" if utf8 else "us-ascii"
    cte = "8bit" if utf8 else "7bit"
    if attach:
        boundary = "=_corpus_%d_%d_%08x" % (seed, i, rng.getrandbits(32))
        hdr.append('Content-Type: multipart/mixed; boundary="%s"' % boundary)
        data = rng.randbytes(attach * 3 // 4)
        b64 = base64.encodebytes(data).decode().rstrip("\n").split("\n")
        body = (["This is a multi-part message in MIME format.", "",
                 "--" + boundary,
                 "Content-Type: text/plain; charset=%s" % charset,
                 "Content-Transfer-Encoding: %s" % cte, ""]
                + lines
                + ["", "--" + boundary,
                   'Content-Type: application/octet-stream; name="data-%d.bin"' % i,
                   "Content-Transfer-Encoding: base64",
                   'Content-Disposition: attachment; filename="data-%d.bin"' % i, ""]
                + b64 + ["--" + boundary + "--", ""])
    else:
        hdr.append("Content-Type: text/plain; charset=%s" % charset)
        hdr.append("Content-Transfer-Encoding: %s" % cte)
        body = lines

    if "empty-body" in tricks:
        body = []
    head = "\n".join(hdr)
    if "no-body" in tricks:
        text = head + "\n"
    elif not body:
        text = head + "\n\n"
    else:
        text = head + "\n\n" + "\n".join(body) + "\n"
    raw = text.encode("utf-8")

    if "crlf-file" in tricks or "mixed-eol" in tricks:
        raw = raw.replace(b"\n", b"\r\n")
        if "mixed-eol" in tricks:
            # turn a few body CRLFs back into bare LF
            parts = raw.split(b"\r\n")
            hb = parts.index(b"") if b"" in parts else len(parts)
            for _ in range(5):
                if len(parts) - hb > 3:
                    k = rng.randrange(hb + 1, len(parts) - 1)
                    parts[k] = parts[k] + b"\n" + parts[k + 1]
                    del parts[k + 1]
            raw = b"\r\n".join(parts)
    if "no-final-eol" in tricks:
        raw = raw.rstrip(b"\r\n")
    return raw, msgid


def plan(rng, n):
    """Which tricks each message carries."""
    out = []
    for i in range(n):
        if i < len(TRICKS):
            t = {TRICKS[i]}
        elif rng.random() < 0.12:
            t = {rng.choice(TRICKS)}
            if rng.random() < 0.3:
                t.add(rng.choice(TRICKS))
        else:
            t = set()
        if "empty-body" in t or "no-body" in t:
            t -= {"dot-lines", "long-lines", "from-lines", "bare-cr", "mixed-eol",
                  "nul-bytes"}
        if "empty-body" in t and "no-body" in t:
            t.discard("empty-body")
        out.append(sorted(t))
    return out


def generate(n, seed=1, profile="small", huge_bytes=0, tricks=True):
    """n messages (plus one of huge_bytes bytes when huge_bytes > 0).
    profile "small": 1-3 KB; "realistic": 2-50 KB, ~5% with a 0.2-2 MB
    attachment.  Returns a list of dicts: i, corpus_id, raw (bytes),
    message_id (str or None), tricks (list), sha256 (of raw)."""
    plans = plan(random.Random(seed * 7919 + 1), n)
    if not tricks:
        plans = [[] for _ in range(n)]
    jobs = [(i, plans[i], 0) for i in range(n)]
    if huge_bytes:
        jobs.append((n, [], int(huge_bytes)))
    msgids, out = [], []
    for i, t, huge in jobs:
        mrng = random.Random("%d/%d" % (seed, i))     # per-message stream: stable under n
        raw, msgid = build(mrng, seed, i, t, profile, msgids, huge)
        if msgid and "dup-msgid" not in t:
            msgids.append(msgid)
        out.append({"i": i, "corpus_id": "%d-%d" % (seed, i), "raw": raw,
                    "message_id": msgid, "tricks": t,
                    "sha256": hashlib.sha256(raw).hexdigest()})
    return out


def tricky(seed=1):
    """One small message per trick: {trick: raw bytes} (dup-msgid repeats
    the Message-ID of the "plain" message, which is included too)."""
    out = {}
    msgids = []
    raw, msgid = build(random.Random("%d/plain" % seed), seed, 0, [], "small", msgids)
    msgids.append(msgid)
    out["plain"] = raw
    for k, t in enumerate(TRICKS):
        raw, _ = build(random.Random("%d/%s" % (seed, t)), seed, k + 1, [t], "small", msgids)
        out[t] = raw
    return out


def big_message(size, seed=1):
    """One message of about size bytes (a base64 attachment)."""
    raw, _ = build(random.Random("%d/big" % seed), seed, 999999, [], "small", [], int(size))
    return raw


def main():
    ap = argparse.ArgumentParser(description="write a corpus as DIR/<i>.eml")
    ap.add_argument("dir")
    ap.add_argument("-n", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile", choices=["realistic", "small"], default="small")
    ap.add_argument("--huge-mb", type=float, default=0)
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    for m in generate(a.n, a.seed, a.profile, int(a.huge_mb * 1024 * 1024)):
        with open(os.path.join(a.dir, "%d.eml" % m["i"]), "wb") as f:
            f.write(m["raw"])


if __name__ == "__main__":
    main()
