#!/usr/bin/python3
"""tls-server.py -- one-connection scripted server for test-net.

usage: tls-server.py MODE [--cert PEM --key KEY] [--unix PATH]
                          [--record FILE]

Listens on 127.0.0.1 (free port) or on a unix socket, prints the port
(or 0) on stdout, serves one connection and exits.  With --cert the
connection is TLS from the first byte (except the starttls modes, which
start plain).  --record gets every byte the client sent after the TLS
handshake (or from the start for plain), so the test can check that
nothing was sent before a failed handshake.

MODE:
  echo            greet "+OK hello", then answer each line "+OK <line>"
  midline         send "+OK partial" (no CRLF) and close
  stall           greet, then never answer
  trickle         greet, then a line one byte every 50 ms, for ever
  silent          accept and never send a byte (not even a handshake)
  starttls        greet plain, read a line, "+OK begin TLS", TLS, echo
  starttls-inject greet plain, read a line, "+OK begin TLS\\r\\n" and
                  injected bytes in one segment, then wait for EOF
"""
import argparse
import os
import signal
import socket
import ssl
import sys
import time


def record(args, data):
    if args.record and data:
        with open(args.record, "ab") as f:
            f.write(data)


def readline(conn, args):
    buf = b""
    while not buf.endswith(b"\n"):
        b = conn.recv(1)
        if not b:
            break
        buf += b
    record(args, buf)
    return buf


def wrap(conn, args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    return ctx.wrap_socket(conn, server_side=True)


def echo(conn, args):
    conn.sendall(b"+OK hello\r\n")
    while True:
        line = readline(conn, args)
        if not line:
            return
        conn.sendall(b"+OK " + line.rstrip(b"\r\n") + b"\r\n")


def serve(conn, args):
    mode = args.mode
    if mode == "silent":
        time.sleep(30)
        return
    if args.cert and not mode.startswith("starttls"):
        try:
            conn = wrap(conn, args)
        except (ssl.SSLError, OSError) as e:
            sys.stderr.write("tls-server: handshake failed: %s\n" % e)
            return
    if mode == "echo":
        echo(conn, args)
    elif mode == "midline":
        conn.sendall(b"+OK partial")
        time.sleep(0.2)
    elif mode == "stall":
        conn.sendall(b"+OK hello\r\n")
        time.sleep(30)
    elif mode == "trickle":
        conn.sendall(b"+OK hello\r\n")
        for _ in range(600):
            conn.sendall(b"x")
            time.sleep(0.05)
    elif mode == "longline":
        # a short line, then one that never ends (trickled: no timeout)
        conn.sendall(b"+OK hello\r\n+OK ")
        for _ in range(300):
            conn.sendall(b"x" * 1024)
            time.sleep(0.001)
        time.sleep(5)
    elif mode in ("starttls", "starttls-inject"):
        conn.sendall(b"+OK ready\r\n")
        readline(conn, args)
        if mode == "starttls-inject":
            conn.sendall(b"+OK begin TLS\r\n+OK injected\r\n")
            while True:
                data = conn.recv(4096)
                if not data:
                    return
                record(args, data)
        conn.sendall(b"+OK begin TLS\r\n")
        try:
            conn = wrap(conn, args)
        except (ssl.SSLError, OSError) as e:
            sys.stderr.write("tls-server: handshake failed: %s\n" % e)
            return
        echo(conn, args)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--unix")
    ap.add_argument("--record")
    args = ap.parse_args()
    signal.alarm(30)            # never outlive a broken test
    if args.unix:
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ls.bind(args.unix)
        port = 0
    else:
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", 0))
        port = ls.getsockname()[1]
    ls.listen(1)
    sys.stdout.write("%d\n" % port)
    sys.stdout.flush()
    conn, _ = ls.accept()
    try:
        serve(conn, args)
    except (OSError, ssl.SSLError) as e:
        sys.stderr.write("tls-server: %s\n" % e)
    finally:
        try:
            conn.close()
        except OSError:
            pass
        if args.unix:
            os.unlink(args.unix)


if __name__ == "__main__":
    main()
