#!/usr/bin/env python3
"""Big-mailbox client for bench/imap/bigbox.sh (python3 imaplib, no other dependency).

    bigbox.py load HOST PORT USER PASS N [CONNS]   APPEND messages 1..N of gen_mbox.py to INBOX
                                                   over CONNS parallel connections (default 4)
    bigbox.py time HOST PORT USER PASS N           time the operations below, twice; print JSON

Timed, each on the same logged-in connection, in this order, in two rounds (the first round
includes whatever the server builds lazily: indexes, caches):
    SELECT INBOX; UID FETCH 1:* (UID FLAGS); FETCH 1:1000 (ENVELOPE BODYSTRUCTURE);
    UID SEARCH TEXT zebrafish; UID SORT (DATE) UTF-8 ALL; THREAD REFERENCES UTF-8 ALL
An operation the server refuses (NO/BAD, e.g. SORT not advertised) is reported as null with
the reason. Answers are checked for size (N FETCH lines, N sorted UIDs, N/10 search hits) so
that a fast wrong answer does not pass as a fast one.
"""
import imaplib
import json
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../tests/imaptest"))
import gen_mbox  # noqa: E402

imaplib._MAXLINE = 1 << 30  # SORT/THREAD answers for 100,000 messages are single long lines


def connect(host, port, user, pw):
    m = imaplib.IMAP4(host, int(port), timeout=3600)
    m.login(user, pw)
    return m


def load(host, port, user, pw, n, conns=4):
    n, conns = int(n), int(conns)
    errors = []
    done = [0]
    lock = threading.Lock()
    t0 = time.time()

    def worker(k):
        try:
            m = connect(host, port, user, pw)
            for i in range(k + 1, n + 1, conns):
                msg, t = gen_mbox.message(i)
                typ, data = m.append("INBOX", None, imaplib.Time2Internaldate(t), msg)
                if typ != "OK":
                    raise RuntimeError(f"APPEND {i}: {typ} {data}")
                with lock:
                    done[0] += 1
                    if done[0] % 10000 == 0:
                        print(f"  {done[0]} appended ({time.time() - t0:.0f}s)", file=sys.stderr)
            m.logout()
        except Exception as e:  # reported below
            errors.append(f"connection {k}: {e}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(conns)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        sys.exit("load failed: " + "; ".join(errors))
    print(f"{time.time() - t0:.1f}")


def timed(m, name, fn, check, out):
    t = time.perf_counter()
    try:
        typ, data = fn()
    except imaplib.IMAP4.error as e:
        out.append({"op": name, "secs": None, "note": str(e)[:120]})
        return
    secs = time.perf_counter() - t
    note = check(typ, data)
    out.append({"op": name, "secs": secs, "note": note})


def count_fetch(data):
    """Messages in imaplib's FETCH data: each starts with "N (" (a tuple when it has literals)."""
    seen = 0
    for d in data:
        head = d[0] if isinstance(d, tuple) else d
        if head and re.match(rb"\d+ \(", head):
            seen += 1
    return seen


def numbers(data):
    return [int(x) for d in data if d for x in d.split() if x.isdigit()]


def run(host, port, user, pw, n):
    n = int(n)
    m = connect(host, port, user, pw)
    rounds = []
    for _ in range(2):
        out = []
        timed(m, "SELECT", lambda: m.select("INBOX"),
              lambda typ, data: f"{typ} EXISTS={data[0].decode()}", out)
        timed(m, "UID FETCH 1:* (UID FLAGS)", lambda: m.uid("FETCH", "1:*", "(UID FLAGS)"),
              lambda typ, data: f"{count_fetch(data)} messages", out)
        timed(m, "FETCH 1:1000 (ENVELOPE BODYSTRUCTURE)",
              lambda: m.fetch(f"1:{min(1000, n)}", "(ENVELOPE BODYSTRUCTURE)"),
              lambda typ, data: f"{count_fetch(data)} messages", out)
        timed(m, "UID SEARCH TEXT zebrafish", lambda: m.uid("SEARCH", "TEXT", "zebrafish"),
              lambda typ, data: f"{typ} {len(numbers(data))} hits (expect {n // 10 + (1 if n % 10 >= 3 else 0)})", out)
        timed(m, "UID SORT (DATE) UTF-8 ALL", lambda: m.uid("SORT", "(DATE)", "UTF-8", "ALL"),
              lambda typ, data: f"{typ} {len(numbers(data))} uids", out)
        timed(m, "THREAD REFERENCES UTF-8 ALL", lambda: m.thread("REFERENCES", "UTF-8", "ALL"),
              lambda typ, data: f"{typ} {sum(len(d) for d in data if d)} bytes", out)
        m.close()
        rounds.append(out)
    m.logout()
    print(json.dumps(rounds))


if __name__ == "__main__":
    if len(sys.argv) >= 7 and sys.argv[1] == "load":
        load(*sys.argv[2:])
    elif len(sys.argv) == 7 and sys.argv[1] == "time":
        run(*sys.argv[2:])
    else:
        sys.exit(__doc__)
