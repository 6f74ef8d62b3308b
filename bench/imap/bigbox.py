#!/usr/bin/env python3
"""Big-mailbox client for bench/imap/bigbox.sh (python3 imaplib, no other dependency).

    bigbox.py load HOST PORT USER PASS N [CONNS]   APPEND messages 1..N of gen_mbox.py to INBOX:
                        CONNS=1 (default): in order over one connection, 200 per MULTIAPPEND
                        command (one APPEND each if MULTIAPPEND is not advertised), so that
                        UID i is message i as in Dovecot's Maildir; CONNS>1: single APPENDs
                        over CONNS parallel connections (UIDs then in no fixed order)
    bigbox.py time HOST PORT USER PASS N           time the operations below, twice; print JSON

Timed, each on the same logged-in connection, in this order, in 1 + BIGBOX_WARM_ROUNDS (default
3) rounds (the first round includes whatever the server builds lazily: indexes, caches; the
warm figure printed is each operation's median over the other rounds), then BIGBOX_WARM_ROUNDS
more rounds on a plain socket that reads the answers without parsing them (the third set of
figures: the server's time to answer, which imaplib's parsing hides for the long answers):
    SELECT INBOX; UID FETCH 1:* (UID FLAGS); FETCH 1:1000 (ENVELOPE BODYSTRUCTURE);
    UID SEARCH TEXT zebrafish; UID SORT (DATE) UTF-8 ALL; THREAD REFERENCES UTF-8 ALL
An operation the server refuses (NO/BAD, e.g. SORT not advertised) is reported as null with
the reason. Answers are checked for size (N FETCH lines, N sorted UIDs, N/10 search hits, the
number of threads, and a digest of the SORT and THREAD answers: with the ordered load, equal
digests mean identical answers) so that a fast wrong answer does not pass as a fast one.
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


def load_ordered(host, port, user, pw, n, batch=200):
    """Messages 1..n in order over one connection, so that UID i is message i on every server:
    MULTIAPPEND (RFC 3502) of `batch` messages per command when advertised, else one APPEND each."""
    n = int(n)
    t0 = time.time()
    m = connect(host, port, user, pw)
    typ, caps = m.capability()
    multi = b"MULTIAPPEND" in caps[0].upper().split()
    if not multi:
        batch = 1
    sock = m.sock
    f = sock.makefile("rb")
    tagn = 0
    for start in range(1, n + 1, batch):
        tagn += 1
        tag = f"L{tagn}".encode()
        msgs = [gen_mbox.message(i) for i in range(start, min(n, start + batch - 1) + 1)]
        head = tag + b" APPEND INBOX"
        for k, (msg, t) in enumerate(msgs):
            date = imaplib.Time2Internaldate(t).encode()
            sock.sendall(head + b" " + date + b" {%d}\r\n" % len(msg))
            while True:  # wait for the continuation request
                line = f.readline()
                if not line:
                    sys.exit("load failed: connection closed")
                if line.startswith(b"+"):
                    break
                if line.startswith(tag + b" "):
                    sys.exit(f"load failed at message {start + k}: {line.decode(errors='replace').strip()}")
            sock.sendall(msg)
            head = b""
        sock.sendall(b"\r\n")
        while True:
            line = f.readline()
            if not line:
                sys.exit("load failed: connection closed")
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    sys.exit(f"load failed at messages {start}..: {line.decode(errors='replace').strip()}")
                break
        if (start + len(msgs) - 1) % 10000 == 0:
            print(f"  {start + len(msgs) - 1} appended ({time.time() - t0:.0f}s)", file=sys.stderr)
    f.close()
    m.logout()
    print(f"{time.time() - t0:.1f}")


def load(host, port, user, pw, n, conns=1):
    n, conns = int(n), int(conns)
    if conns == 1:
        return load_ordered(host, port, user, pw, n)
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


def threads(data):
    """Top-level threads in a THREAD answer: independent of the UIDs the load happened to give."""
    n = depth = 0
    for d in data:
        for ch in (d or b"").decode(errors="replace"):
            if ch == "(":
                n += depth == 0
                depth += 1
            elif ch == ")":
                depth -= 1
    return n


def digest(data):
    import hashlib
    return hashlib.sha1(b"".join(d for d in data if isinstance(d, bytes))).hexdigest()[:8]


def numbers(data):
    return [int(x) for d in data if d for x in d.split() if x.isdigit()]


def run(host, port, user, pw, n):
    n = int(n)
    warm = max(1, int(os.environ.get("BIGBOX_WARM_ROUNDS", "3")))
    m = connect(host, port, user, pw)
    rounds = []
    for _ in range(1 + warm):
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
              lambda typ, data: f"{typ} {len(numbers(data))} uids #{digest(data)}", out)
        timed(m, "THREAD REFERENCES UTF-8 ALL", lambda: m.thread("REFERENCES", "UTF-8", "ALL"),
              lambda typ, data: f"{typ} {threads(data)} threads #{digest(data)}", out)
        m.close()
        rounds.append(out)
    m.logout()
    # Cold, then each operation's median over the warm rounds (the client's own speed bounds
    # some of them, and one round's figure moves with whatever else the machine does).
    median = []
    for i, last in enumerate(rounds[-1]):
        secs = [r[i]["secs"] for r in rounds[1:]]
        if any(x is None for x in secs):
            median.append(last)
            continue
        note = f"{last['note']} (median of {', '.join(f'{x:.4f}' for x in secs)})" if warm > 1 else last["note"]
        median.append({"op": last["op"], "secs": sorted(secs)[len(secs) // 2], "note": note})
    print(json.dumps([rounds[0], median, wire(host, port, user, pw, n, warm)]))


def wire(host, port, user, pw, n, rounds):
    """The warm operations again on a plain socket, each timed from sending the command to the
    tagged answer's arrival, the answer read line by line (and literal by literal) but not
    parsed (a line is searched for a literal's announcement only when it ends with "}"): how long the server takes to answer, without imaplib's parsing, which bounds the
    long answers (100,000 FETCH lines took imaplib ten times as long as the server). Each
    operation's median over `rounds` rounds."""
    import socket
    s = socket.create_connection((host, int(port)), timeout=3600)
    f = s.makefile("rb")
    f.readline()
    tagn = [0]

    def cmd(text):
        tagn[0] += 1
        tag = b"W%d" % tagn[0]
        s.sendall(tag + b" " + text.encode() + b"\r\n")
        lines = 0
        while True:
            line = f.readline()
            if not line:
                sys.exit("wire: connection closed")
            lines += 1
            if line.endswith(b"}\r\n"):  # a literal follows: read it whole
                m = re.search(rb"\{(\d+)\}\r\n$", line)
                if m:
                    f.read(int(m.group(1)))
            if line.startswith(tag + b" "):
                return line.split(b" ", 2)[1].decode(), lines

    cmd(f'LOGIN "{user}" "{pw}"')
    ops = [
        ("SELECT", "SELECT INBOX"),
        ("UID FETCH 1:* (UID FLAGS)", "UID FETCH 1:* (UID FLAGS)"),
        ("FETCH 1:1000 (ENVELOPE BODYSTRUCTURE)", f"FETCH 1:{min(1000, n)} (ENVELOPE BODYSTRUCTURE)"),
        ("UID SEARCH TEXT zebrafish", "UID SEARCH TEXT zebrafish"),
        ("UID SORT (DATE) UTF-8 ALL", "UID SORT (DATE) UTF-8 ALL"),
        ("THREAD REFERENCES UTF-8 ALL", "THREAD REFERENCES UTF-8 ALL"),
    ]
    times = {name: [] for name, _ in ops}
    notes = {}
    for _ in range(rounds):
        for name, text in ops:
            t = time.perf_counter()
            status, lines = cmd(text)
            times[name].append(time.perf_counter() - t)
            notes[name] = f"{status}, {lines} lines"
        cmd("CLOSE")
    cmd("LOGOUT")
    s.close()
    out = []
    for name, _ in ops:
        secs = times[name]
        if notes[name].startswith("OK"):
            out.append({"op": name, "secs": sorted(secs)[len(secs) // 2],
                        "note": f"{notes[name]} (median of {', '.join(f'{x:.4f}' for x in secs)})"})
        else:
            out.append({"op": name, "secs": None, "note": notes[name]})
    return out


if __name__ == "__main__":
    if len(sys.argv) >= 7 and sys.argv[1] == "load":
        load(*sys.argv[2:])
    elif len(sys.argv) == 7 and sys.argv[1] == "time":
        run(*sys.argv[2:])
    else:
        sys.exit(__doc__)
