#!/usr/bin/env python3
"""Deterministic test mail for tests/imaptest/run.sh and bench/imap/*.sh.

    gen_mbox.py mbox FILE [N]          N messages (default 300) as an mbox, for imaptest's mbox=
    gen_mbox.py maildir DIR N          N messages as Maildir files in DIR/cur (DIR/new, DIR/tmp made)

The same N gives the same bytes every time (no clock, no random state outside random.Random(i)).
Messages are 1-12 KB of plain text or multipart/mixed with a small attachment, with distinct
senders, recipients, subjects, dates over two years, and In-Reply-To/References chains so that
THREAD and SORT have work to do. One message in ten contains the word "zebrafish" in its body
(bench/imap/bigbox.sh searches for it).
"""
import os
import random
import sys

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "
         "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu mail "
         "server queue message folder account quota store fetch search thread sort header "
         "envelope body part attachment delivery report meeting budget review draft").split()
NAMES = ["Alice Archer", "Bob Baker", "Carol Cole", "Dave Dunn", "Eve Evans", "Frank Ford",
         "Grace Green", "Heidi Hall", "Ivan Irwin", "Judy Jones", "Mallory Moss", "Olivia Owen"]
DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
BASE = 1640995200  # 2022-01-01T00:00:00Z; dates are computed from it, not from the clock


def addr(name):
    return name.split()[0].lower() + "@" + ("example.test" if len(name) % 2 else "other.test")


def rfc2822_date(t):
    # Proleptic computation without time.gmtime's locale: days since 1970-01-01 (a Thursday).
    days, secs = divmod(t, 86400)
    wday = DAYS[(days + 3) % 7]
    y = 1970
    while True:
        ylen = 366 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 365
        if days < ylen:
            break
        days -= ylen
        y += 1
    mlen = [31, 29 if ylen == 366 else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    m = 0
    while days >= mlen[m]:
        days -= mlen[m]
        m += 1
    hh, rem = divmod(secs, 3600)
    mm, ss = divmod(rem, 60)
    return f"{wday}, {days + 1:02d} {MONTHS[m]} {y} {hh:02d}:{mm:02d}:{ss:02d} +0000", (y, m, days + 1, wday, hh, mm, ss)


def message(i):
    """Message number i (1-based): (bytes with CRLF line ends, unix time)."""
    r = random.Random(i)
    t = BASE + i * 617 + r.randrange(600)  # increasing, about 10 min apart
    date, _ = rfc2822_date(t)
    frm = NAMES[r.randrange(len(NAMES))]
    to = NAMES[r.randrange(len(NAMES))]
    topic = i // 5 if r.random() < 0.6 else i  # runs of replies share a topic
    subj_words = " ".join(random.Random(topic * 7919).choice(WORDS) for _ in range(4))
    reply = topic != i and topic >= 1 and i % 5 != 0  # i-1 is then in the same topic, from topic*5 on
    subject = ("Re: " if reply else "") + f"{subj_words} #{topic}"
    lines = [
        f"From: {frm} <{addr(frm)}>",
        f"To: {to} <{addr(to)}>",
        f"Subject: {subject}",
        f"Date: {date}",
        f"Message-ID: <m{i}@gen.example.test>",
    ]
    if reply:
        parent, root = i - 1, topic * 5
        lines.append(f"In-Reply-To: <m{parent}@gen.example.test>")
        refs = f"<m{root}@gen.example.test>" + (f" <m{parent}@gen.example.test>" if parent != root else "")
        lines.append(f"References: {refs}")
    if r.random() < 0.3:
        lines.append(f"Cc: {NAMES[(i * 3) % len(NAMES)]} <{addr(NAMES[(i * 3) % len(NAMES)])}>")
    lines.append("MIME-Version: 1.0")
    nwords = 150 + r.randrange(1800)
    body_words = [r.choice(WORDS) for _ in range(nwords)]
    if i % 10 == 3:
        body_words[r.randrange(nwords)] = "zebrafish"
    text = []
    for k in range(0, nwords, 12):
        text.append(" ".join(body_words[k:k + 12]))
    if i % 4 == 0:
        boundary = f"=_b{i}"
        lines.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
        lines.append("")
        lines.append("This is a multi-part message in MIME format.")
        lines.append(f"--{boundary}")
        lines.append("Content-Type: text/plain; charset=us-ascii")
        lines.append("")
        lines.extend(text)
        lines.append(f"--{boundary}")
        lines.append(f'Content-Type: application/octet-stream; name="data{i}.bin"')
        lines.append("Content-Transfer-Encoding: base64")
        lines.append(f'Content-Disposition: attachment; filename="data{i}.bin"')
        lines.append("")
        import base64
        blob = base64.b64encode(bytes(r.randrange(256) for _ in range(300 + r.randrange(900)))).decode()
        lines.extend(blob[k:k + 76] for k in range(0, len(blob), 76))
        lines.append(f"--{boundary}--")
    else:
        lines.append("Content-Type: text/plain; charset=us-ascii")
        lines.append("")
        lines.extend(text)
    return ("\r\n".join(lines) + "\r\n").encode(), t


def write_mbox(path, n):
    with open(path, "wb") as f:
        for i in range(1, n + 1):
            msg, t = message(i)
            _, (y, m, d, wday, hh, mm, ss) = rfc2822_date(t)
            f.write(f"From sender@gen.example.test {wday} {MONTHS[m]} {d:2d} {hh:02d}:{mm:02d}:{ss:02d} {y}\n".encode())
            body = msg.replace(b"\r\n", b"\n")
            # mboxrd-style quoting of body lines that start with "From "
            body = b"\n".join((b">" + l if l.startswith(b"From ") else l) for l in body.split(b"\n"))
            f.write(body)
            if not body.endswith(b"\n"):
                f.write(b"\n")
            f.write(b"\n")


def write_maildir(path, n):
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
    cur = os.path.join(path, "cur")
    for i in range(1, n + 1):
        msg, t = message(i)
        msg = msg.replace(b"\r\n", b"\n")  # Maildir files hold LF line ends
        name = os.path.join(cur, f"{t}.M{i}P1.gen,S={len(msg)}:2,")
        with open(name, "wb") as f:
            f.write(msg)
        os.utime(name, (t, t))  # Dovecot takes INTERNALDATE from the file's mtime
        if i % 10000 == 0:
            print(f"  {i} messages written", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("mbox", "maildir"):
        sys.exit(__doc__)
    if sys.argv[1] == "mbox":
        write_mbox(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 300)
    else:
        write_maildir(sys.argv[2], int(sys.argv[3]))
