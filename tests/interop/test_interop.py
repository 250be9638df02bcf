"""test_interop.py -- one end-to-end cell of the interop matrix: a real
source server (Cyrus, Courier, popa3d, Dovecot) over POP3 or IMAP into a
real target (Dovecot LMTP, Cyrus LMTP, Postfix, Exim, OpenSMTPD, or the
IMAP target appending to Cyrus or Courier: cyrus-append, courier-append).

    MAILHAUL=build/mailhaul python3 tests/interop/test_interop.py \\
        SOURCE-PROTO:TARGET [--tls implicit|starttls|none] [-n N]

e.g. cyrus-imap:dovecot-lmtp, courier-pop3:postfix,
dovecot-imap:cyrus-append.  The cell: seed the tricky corpus
(tests/integration/corpus.py) plus N generated messages into the source
(what it refuses is left out), read what the source serves with a
stdlib client, then

  1. sync, keep: every served message arrives once, byte for byte (after
     the trace fields mailhaul and the target add, see servers.unwrap);
  2. sync again: nothing delivered;
  3. sync with delete_after = 1s: the source is empty, nothing delivered.

A target that refuses some messages for good (a 5xx, or an APPEND's NO:
its own limits) makes the cell partial when everything else holds:
those messages stay on the source, the others pass.  Prints one line
"CELL result detail" last (result pass, partial, fail or skip;
scripts/interop collects them).  Exit 0 pass, 1 fail or partial, 77
when a server is not unpacked (tests/interop/fetch-servers) or cannot
run here.
"""
import argparse
import os
import re
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import corpus   # noqa: E402
import mh       # noqa: E402
import servers  # noqa: E402


EX_DATAERR = 65


class Partial(Exception):
    """The target refused some messages for good; the rest passed."""


def corpus_messages(n):
    msgs = list(corpus.tricky(seed=5).values())
    msgs += [m["raw"] for m in corpus.generate(n, seed=6)]
    return msgs


def config(h, account, target, extra=""):
    text = ("[general]\nstate = %s\n\n[target:t]\n%s\n[account:a]\n%s"
            "target = t\n%s" % (h.path("state", "state.db"), target,
                                account, extra))
    return mh.write_config(h.path("mailhaul.ini"), text)


def sync(cfg, what, ok=(0,), args=()):
    rc, out, err = mh.run_mailhaul(["sync"] + list(args), cfg, timeout=600)
    if rc not in ok:
        raise AssertionError("%s: sync rc %d\nstdout:\n%s\nstderr:\n%s"
                             % (what, rc, out, err[-4000:]))
    return out + err


def refusals(out):
    """(count, first reply) of the messages the target refused for good,
    from a sync's output."""
    m = re.search(r", (\d+) refused,", out)
    r = re.search(r"refused for good by target .*server said: (.*)", out)
    return (int(m.group(1)) if m else 0), (r.group(1) if r else "")


def by_id(msgs, what):
    out = {}
    for m in msgs:
        cid = mh.header(m, "X-Corpus-Id")
        if cid is None:
            raise AssertionError("%s: a message without X-Corpus-Id: %r"
                                 % (what, m[:300]))
        if cid in out:
            raise AssertionError("%s: %s twice" % (what, cid))
        out[cid] = m
    return out


def first_difference(want, got):
    k = 0
    while k < min(len(want), len(got)) and want[k] == got[k]:
        k += 1
    return ("differs at byte %d (want %d bytes, got %d): want %r, got %r"
            % (k, len(want), len(got), want[max(0, k - 30):k + 30],
               got[max(0, k - 30):k + 30]))


def compare(served, stored, tgt, refused=0):
    """Every served message arrived exactly once and byte-exact, but for
    `refused` of them (refused for good by the target); returns the
    number delivered."""
    want = by_id(served, "served")
    got = by_id([tgt.unwrap(m) for m in stored], "delivered")
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    if len(missing) != refused or extra:
        raise AssertionError("%d served, %d delivered, %d refused; missing "
                             "%s, extra %s" % (len(want), len(got), refused,
                                               missing[:8], extra[:8]))
    bad = []
    for cid, m in sorted(want.items()):
        if cid in missing:
            continue
        w = tgt.expect(m)
        if got[cid] != w:
            bad.append("%s: %s" % (cid, first_difference(w, got[cid])))
    if bad:
        raise AssertionError("%d of %d not byte-exact:\n  %s"
                             % (len(bad), len(want), "\n  ".join(bad[:10])))
    return len(want) - refused


def run_cell(cell, tls, n):
    src, tgt_name = cell.split(":")
    src_name, proto = src.rsplit("-", 1)
    with mh.Harness() as h, \
            servers.SOURCES[src_name](h) as s, \
            servers.TARGETS[tgt_name](h) as t:
        msgs = corpus_messages(n)
        took = s.seed(msgs)
        served = s.served(proto)
        if len(served) != took or took < len(msgs) * 9 // 10:
            raise AssertionError("seeded %d of %d, the server serves %d"
                                 % (took, len(msgs), len(served)))
        cfg = config(h, s.account(proto, tls), t.target(), "keep = yes\n")
        # EX_DATAERR: the target refused some messages for good (a
        # server's own limit, e.g. OpenSMTPD's line length): they stay
        # on the source, the cell is partial
        out = sync(cfg, "keep pass", ok=(0, EX_DATAERR), args=["-v"])
        nref, why = refusals(out)
        # a target that offers CHUNKING got every message as BDAT chunks
        # (the debug line of each), none by DATA
        bdat = len(re.findall(r"bytes in \d+ BDAT chunk", out))
        if t.chunking and bdat != len(served):
            raise AssertionError("%s offers CHUNKING: %d of %d messages "
                                 "went as BDAT" % (tgt_name, bdat,
                                                   len(served)))
        # and with PIPELINING, messages went ahead (the envelope and the
        # data while the one before was recorded, BDAT 0 LAST after)
        ahead = len(re.findall(r"next message sent ahead", out))
        if t.chunking and len(served) > 2 and ahead == 0:
            raise AssertionError("%s offers CHUNKING: no message was sent "
                                 "ahead" % tgt_name)
        # an MTA delivers from its queue after its 250: wait for it
        mh.wait_for(lambda: len(t.delivered()) >= len(served) - nref, 60,
                    0.2)
        try:
            k = compare(served, t.delivered(), t, nref)
        except AssertionError as e:
            raise AssertionError("%s\nkeep pass:\n%s" % (e, out[-3000:]))
        sync(cfg, "second pass")
        if len(t.delivered()) != k:
            raise AssertionError("the second pass delivered %d more"
                                 % (len(t.delivered()) - k))
        cfg = config(h, s.account(proto, tls), t.target(),
                     "delete_after = 1s\n")
        time.sleep(1.1)
        out = sync(cfg, "delete pass")
        left = s.count(proto)
        if left != nref:
            raise AssertionError("delete pass: %d left on the source\n%s"
                                 % (left, out[-3000:]))
        if len(t.delivered()) != k:
            raise AssertionError("the delete pass delivered again")
        if nref:
            raise Partial("%d of %d delivered byte-exact, %d refused by the "
                          "target (kept on the source): %s"
                          % (k, len(msgs), nref, why))
        return "%d of %d seeded, served and delivered byte-exact" % (
            k, len(msgs))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cell")
    ap.add_argument("--tls", default="starttls")
    ap.add_argument("-n", type=int, default=int(os.environ.get(
        "MH_INTEROP_N", "30")))
    a = ap.parse_args()
    try:
        detail = run_cell(a.cell, a.tls, a.n)
    except Partial as e:
        print("CELL %s partial %s" % (a.cell, e))
        return 1
    except servers.Unavailable as e:
        print("CELL %s skip %s" % (a.cell, e))
        return servers.EX_SKIP
    except Exception as e:
        traceback.print_exc()
        print("CELL %s fail %s" % (a.cell, str(e).split("\n")[0][:300]))
        return 1
    print("CELL %s pass %s" % (a.cell, detail))
    return 0


if __name__ == "__main__":
    sys.exit(main())
