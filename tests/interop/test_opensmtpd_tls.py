"""test_opensmtpd_tls.py -- OpenSMTPD 6.8 with OpenSSL 3 (Debian 12) fails
every TLS handshake (an OpenSMTPD bug: it answers with an "internal
error" alert).  mailhaul must say so, keep the message on the source and
record nothing delivered.

    MAILHAUL=build/mailhaul python3 tests/interop/test_opensmtpd_tls.py

Exit 0 pass, 1 fail, 77 when OpenSMTPD is not unpacked or cannot run.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import mh       # noqa: E402
import servers  # noqa: E402


class OpenSMTPDTls(servers.OpenSMTPD):
    name = "opensmtpd-tls"
    tls = True


def main():
    try:
        with mh.Harness() as h, OpenSMTPDTls(h) as t:
            h.inject("alice", [b"Subject: tls\r\nMessage-ID: <t@x>\r\n\r\n"
                               b"hi\r\n"])
            target = t.target().replace("tls = none", "tls = starttls\n"
                                        "ca_file = %s" % h.ca)
            cfg = mh.write_config(h.path("mailhaul.ini"), (
                "[general]\nstate = %s\n\n[target:t]\n%s\n[account:a]\n"
                "protocol = pop3\nhost = localhost\nport = %d\n"
                "tls = implicit\nca_file = %s\nuser = alice\n"
                "password = %s\ntarget = t\nkeep = no\n")
                % (h.path("state", "state.db"), target, h.pop3s_port, h.ca,
                   h.password))
            rc, out, err = mh.run_mailhaul(["sync"], cfg, timeout=120)
            text = out + err
            assert rc != 0, "sync succeeded over OpenSMTPD's TLS?\n" + text
            assert "alert internal error" in text, text
            assert "OpenSMTPD 6.8 with OpenSSL 3" in text, text
            assert h.server_count("alice") == 1, "the message left the source"
            assert not t.delivered(), "OpenSMTPD delivered something"
    except servers.Unavailable as e:
        print("skip: %s" % e)
        return servers.EX_SKIP
    print("ok: the handshake failure names OpenSMTPD's bug; nothing lost")
    return 0


if __name__ == "__main__":
    sys.exit(main())
