"""test_etrn.py -- protocol = etrn (RFC 1985) against a real Postfix.

    MAILHAUL=build/mailhaul python3 tests/interop/test_etrn.py

Postfix plays the provider that queues mail for the user's domain
etrn.test: relay_domains and fast_flush_domains hold it, its transport
is smtp to the user's own MX (the harness's SMTP sink), and
defer_transports = smtp keeps the mail queued until someone asks (the
dial-up setup of Postfix's ETRN_README; its queue runs are an hour
apart).  A message for carol@etrn.test is queued; the MX gets nothing;
`mailhaul sync` with an etrn account (STARTTLS, certificate verified)
says ETRN etrn.test, Postfix answers 250 and flushes: the MX gets the
message.  A domain Postfix does not flush for is refused (459 <domain>:
service unavailable), which fails the pass temporarily (exit 75) after
the other domain was asked, and is reported.  Exit 0 pass, 1 fail, 77 when Postfix is
not unpacked or this is not root.
"""
import os
import smtplib
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import mh       # noqa: E402
import servers  # noqa: E402

MSG = (b"From: someone@example.org\r\nTo: carol@etrn.test\r\n"
       b"Subject: queued for etrn.test\r\nMessage-ID: <etrn-1@example.org>"
       b"\r\n\r\nheld at the provider until ETRN\r\n")


class EtrnPostfix(servers.Postfix):
    name = "postfix-etrn"

    def __init__(self, h):
        servers.Postfix.__init__(self, h)
        self.extra_main = (
            "relay_domains = etrn.test\n"
            "fast_flush_domains = $relay_domains\n"
            "transport_maps = inline:{ etrn.test=smtp:[127.0.0.1]:%d }\n"
            "defer_transports = smtp\n"
            "queue_run_delay = 3600s\n"
            "minimal_backoff_time = 3600s\n"
            "maximal_backoff_time = 3600s\n"
            "smtp_tls_security_level = none\n" % h.smtp_port)


def queued(pf):
    n = 0
    for q in ("incoming", "active", "deferred"):
        for _, _, files in os.walk(pf.path("spool", q)):
            n += len(files)
    return n


def config(h, pf, domains):
    return mh.write_config(h.path("etrn.ini"), (
        "[general]\nstate = %s\n\n[account:relay]\nprotocol = etrn\n"
        "host = localhost\nport = %d\ntls = starttls\nca_file = %s\n"
        "etrn_domains = %s\n" % (h.path("state", "state.db"),
                                 pf.ports["smtp"], h.ca, domains)))


def run():
    with mh.Harness() as h, EtrnPostfix(h) as pf:
        s = smtplib.SMTP("127.0.0.1", pf.ports["smtp"], timeout=30)
        try:
            s.sendmail("someone@example.org", ["carol@etrn.test"], MSG)
        finally:
            s.quit()
        # queued and deferred (defer_transports), not delivered
        if not mh.wait_for(lambda: os.listdir(pf.path("spool", "flush"))
                           and queued(pf) == 1, 60, 0.2):
            raise AssertionError("Postfix did not queue the message: "
                                 "%d queued" % queued(pf))
        if h.smtp_messages("carol"):
            raise AssertionError("delivered before ETRN")
        rc, out, err = mh.run_mailhaul(["sync"], config(h, pf, "etrn.test"),
                                       timeout=120)
        if rc != 0 or "ETRN etrn.test: 250" not in out + err:
            raise AssertionError("sync rc %d:\n%s%s" % (rc, out, err))
        if not mh.wait_for(lambda: len(h.smtp_messages("carol")) == 1, 60,
                           0.2):
            raise AssertionError("ETRN answered but nothing delivered; "
                                 "%d still queued" % queued(pf))
        got = h.smtp_messages("carol")[0]
        if b"held at the provider until ETRN" not in got:
            raise AssertionError("delivered something else: %r" % got[:300])
        # a domain Postfix does not flush: refused, reported, tempfail
        rc, out, err = mh.run_mailhaul(
            ["sync"], config(h, pf, "etrn.test, other.test"), timeout=120)
        if rc != 75 or "ETRN other.test refused" not in out + err:
            raise AssertionError("unknown domain: rc %d:\n%s%s"
                                 % (rc, out, err))
        print("ok: %s" % [l for l in (out + err).splitlines()
                          if "ETRN" in l])


if __name__ == "__main__":
    sys.exit(servers.run_test(run))
