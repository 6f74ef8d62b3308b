"""IMAP scenarios run by tests/imap.rs: client.py SCENARIO PORT143 PORT993 [PORT143 PORT993 ...]
(one pair per node). Python's imaplib where it fits, a small raw client (`Raw`) where the exact
wire matters. Each scenario prints what it checks and exits non-zero on the first failure."""
import base64
import imaplib
import re
import socket
import ssl
import sys
import threading
import time

HOST = "127.0.0.1"
PASSWORD = "correct horse"
ALICE = "alice@example.test"
BOB = "bob@example.test"


def check(cond, what):
    if not cond:
        print("FAIL:", what)
        sys.exit(1)
    print("ok:", what)


def tls_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def poll(what, fn, limit=10.0):
    """Calls fn until it returns something true; fails after `limit` seconds."""
    end = time.time() + limit
    while True:
        v = fn()
        if v:
            return v
        check(time.time() < end, f"timed out waiting for {what}")
        time.sleep(0.05)


class Raw:
    """A line-level IMAP client: cmd() sends one tagged command (synchronizing literals given
    as bytes parts) and returns (untagged lines, tagged line), literals inlined."""

    def __init__(self, port, tls=False, timeout=10):
        s = socket.create_connection((HOST, port), timeout=timeout)
        if tls:
            s = tls_ctx().wrap_socket(s)
        self.sock = s
        self.buf = b""
        self.n = 0
        self.greeting = self.line()

    def starttls(self):
        _, tagged = self.cmd("STARTTLS")
        check(b" OK" in tagged, f"STARTTLS {tagged}")
        check(self.buf == b"", "nothing buffered past the STARTTLS answer")
        self.sock = tls_ctx().wrap_socket(self.sock)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def fill(self, deadline):
        """Reads more bytes; socket.timeout when `deadline` (time.time()) passes first."""
        left = deadline - time.time()
        if left <= 0:
            raise socket.timeout("deadline")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        finally:
            self.sock.settimeout(10)
        if not data:
            raise EOFError("connection closed; buffered: %r" % self.buf[:200])
        self.buf += data

    def readline(self, deadline):
        while b"\n" not in self.buf:
            self.fill(deadline)
        i = self.buf.index(b"\n") + 1
        l, self.buf = self.buf[:i], self.buf[i:]
        return l

    def readn(self, n, deadline):
        while len(self.buf) < n:
            self.fill(deadline)
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def line(self, limit=10.0):
        """One response line, literals inlined; socket.timeout after `limit` seconds."""
        deadline = time.time() + limit
        out = b""
        while True:
            l = self.readline(deadline)
            out += l
            m = re.search(rb"\{(\d+)\+?\}\r\n$", l)
            if not m:
                return out
            out += self.readn(int(m.group(1)), deadline)

    def read_until_tagged(self, tag):
        untagged = []
        while True:
            l = self.line()
            if l.startswith(tag.encode() + b" "):
                return untagged, l
            untagged.append(l)

    def cmd(self, *parts):
        """parts: str pieces and bytes literals, joined by spaces."""
        self.n += 1
        tag = "t%d" % self.n
        early = self.send_parts(tag, parts)
        if early is not None:
            return [], early
        return self.read_until_tagged(tag)

    def send_parts(self, tag, parts):
        """Sends a command; a tagged answer instead of a literal's continuation ends it (the
        server may refuse before the literal) and is returned."""
        buf = tag.encode()
        for p in parts:
            if isinstance(p, bytes):
                self.send(buf + b" {%d}\r\n" % len(p))
                l = self.line()
                if l.startswith(tag.encode() + b" "):
                    return l
                check(l.startswith(b"+"), f"continuation for a literal: {l}")
                buf = p
            else:
                buf += b" " + p.encode()
        self.send(buf + b"\r\n")

    def ok(self, *parts):
        untagged, tagged = self.cmd(*parts)
        check(tagged.split()[1] == b"OK", f"{parts[0][:60]!r} -> {tagged!r}")
        return untagged, tagged

    def login(self, user=ALICE):
        return self.ok("LOGIN", '"%s"' % user, '"%s"' % PASSWORD)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def joined(lines):
    return b"".join(lines)


def msg(subject, body="hello\r\n", frm="Carol <carol@remote.test>", extra="", date="Mon, 7 Feb 1994 21:52:25 -0800"):
    return (
        f"From: {frm}\r\nTo: {ALICE}\r\nSubject: {subject}\r\nDate: {date}\r\n"
        f"Message-ID: <{abs(hash(subject + extra))}@remote.test>\r\n{extra}\r\n{body}"
    ).encode()


MULTIPART = (
    b"From: Dave <dave@remote.test>\r\nTo: alice@example.test\r\nSubject: multi part\r\n"
    b"Date: Tue, 8 Feb 1994 10:00:00 +0000\r\nMessage-ID: <mp1@remote.test>\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XYZ\"\r\n\r\n"
    b"preamble\r\n--XYZ\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
    b"the text part\r\n--XYZ\r\nContent-Type: application/octet-stream; name=\"a.bin\"\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n"
    + base64.encodebytes(b"\x00\x01binary payload\xff").replace(b"\n", b"\r\n")
    + b"--XYZ--\r\n"
)


# ------------------------------------------------------------------ 1: logins


def logins(p143, p993):
    # Greeting with CAPABILITY; LOGINDISABLED without TLS.
    r = Raw(p143)
    check(r.greeting.startswith(b"* OK [CAPABILITY "), f"greeting {r.greeting}")
    check(b"LOGINDISABLED" in r.greeting and b"STARTTLS" in r.greeting, "LOGINDISABLED, STARTTLS in the greeting")
    check(b"IMAP4rev1" in r.greeting or b"IMAP4rev2" in r.greeting, "IMAP4rev1/rev2 in the greeting")
    untagged, _ = r.ok("CAPABILITY")
    check(b"LOGINDISABLED" in joined(untagged), f"CAPABILITY before TLS {untagged}")
    _, tagged = r.cmd("LOGIN", '"%s"' % ALICE, '"%s"' % PASSWORD)
    check(tagged.split()[1] == b"NO", f"LOGIN without TLS refused: {tagged}")
    _, tagged = r.cmd("AUTHENTICATE", "PLAIN", base64.b64encode(b"\0" + ALICE.encode() + b"\0" + PASSWORD.encode()).decode())
    check(tagged.split()[1] == b"NO", f"AUTHENTICATE without TLS refused: {tagged}")
    r.starttls()
    untagged, _ = r.ok("CAPABILITY")
    caps = joined(untagged)
    check(b"LOGINDISABLED" not in caps and b"STARTTLS" not in caps, f"after STARTTLS {caps}")
    check(b"AUTH=PLAIN" in caps, "AUTH=PLAIN after TLS")
    _, tagged = r.login()
    check(b"[CAPABILITY" in tagged, f"LOGIN OK carries CAPABILITY: {tagged}")
    r.ok("LOGOUT")
    r.close()

    # imaplib: STARTTLS then LOGIN.
    m = imaplib.IMAP4(HOST, p143, timeout=10)
    check("LOGINDISABLED" in m.capabilities, f"imaplib sees LOGINDISABLED {m.capabilities}")
    m.starttls(ssl_context=tls_ctx())
    typ, _ = m.login(ALICE, PASSWORD)
    check(typ == "OK", "imaplib STARTTLS + LOGIN")
    m.logout()

    # 993: wrong password, AUTHENTICATE PLAIN with SASL-IR and AUTHENTICATE LOGIN.
    r = Raw(p993, tls=True)
    check(b"LOGINDISABLED" not in r.greeting and b"SASL-IR" in r.greeting, f"993 greeting {r.greeting}")
    t0 = time.time()
    _, tagged = r.cmd("LOGIN", '"%s"' % ALICE, '"wrong"')
    check(tagged.startswith(b"t1 NO [AUTHENTICATIONFAILED]"), f"wrong password: {tagged}")
    print("wrong password answered in %.2fs" % (time.time() - t0))
    cred = base64.b64encode(b"\0" + BOB.encode() + b"\0" + PASSWORD.encode()).decode()
    r.ok("AUTHENTICATE", "PLAIN", cred)
    r.ok("LOGOUT")
    r.close()

    r = Raw(p993, tls=True)
    r.n += 1
    r.send("a1 AUTHENTICATE LOGIN\r\n")
    l = r.line()
    check(l.startswith(b"+ "), f"LOGIN username prompt {l}")
    r.send(base64.b64encode(ALICE.encode()) + b"\r\n")
    l = r.line()
    check(l.startswith(b"+ "), f"LOGIN password prompt {l}")
    r.send(base64.b64encode(PASSWORD.encode()) + b"\r\n")
    _, tagged = r.read_until_tagged("a1")
    check(tagged.startswith(b"a1 OK"), f"AUTHENTICATE LOGIN {tagged}")
    r.ok("SELECT INBOX")
    r.close()

    # imaplib over 993: AUTHENTICATE PLAIN (continuation form).
    m = imaplib.IMAP4_SSL(HOST, p993, ssl_context=tls_ctx(), timeout=10)
    typ, _ = m.authenticate("PLAIN", lambda _: b"\0" + ALICE.encode() + b"\0" + PASSWORD.encode())
    check(typ == "OK", "imaplib AUTHENTICATE PLAIN")
    m.logout()


# ------------------------------------------------------------------ 2-4: mailboxes, APPEND, FETCH


def append_fetch(p143, p993):
    r = Raw(p143)
    r.login()
    untagged, _ = r.ok('LIST "" "*"')
    lst = joined(untagged).decode()
    print(lst)
    for name, use in [("INBOX", None), ("Drafts", "\\Drafts"), ("Sent", "\\Sent"), ("Trash", "\\Trash"), ("Junk", "\\Junk"), ("Archive", "\\Archive")]:
        line = [l for l in lst.split("\r\n") if l.endswith(" " + name) or l.endswith(' "' + name + '"')]
        check(len(line) == 1, f"LIST has {name}")
        if use:
            check(use in line[0], f"{name} has {use}: {line[0]}")
    check(len([l for l in lst.split("\r\n") if l.startswith("* LIST")]) == 6, "exactly six mailboxes")

    # APPEND with flags and a date.
    m1 = msg("first message", "first body line\r\nsecond line\r\n")
    _, tagged = r.ok('APPEND INBOX (\\Flagged $Important) "07-Feb-1994 21:52:25 -0800"', m1)
    m = re.search(rb"\[APPENDUID (\d+) (\d+)\]", tagged)
    check(m is not None and m.group(2) == b"1", f"APPENDUID in {tagged}")
    uidvalidity = m.group(1)
    _, tagged = r.ok("APPEND INBOX", MULTIPART)
    check(b"[APPENDUID " + uidvalidity + b" 2]" in tagged, f"second APPENDUID {tagged}")
    # MULTIAPPEND of two.
    _, tagged = r.ok("APPEND INBOX (\\Seen)", msg("multi one"), "(\\Draft)", msg("multi two"))
    check(re.search(rb"\[APPENDUID " + uidvalidity + rb" 3:4\]", tagged) is not None, f"MULTIAPPEND UIDs {tagged}")
    _, tagged = r.cmd("APPEND Nowhere", msg("lost"))
    check(tagged.startswith(b"t") and b"NO [TRYCREATE]" in tagged, f"APPEND to a missing mailbox {tagged}")

    untagged, tagged = r.ok("SELECT INBOX")
    sel = joined(untagged)
    check(b"* 4 EXISTS" in sel, f"SELECT EXISTS {sel}")
    check(b"[UIDVALIDITY " + uidvalidity + b"]" in sel, "SELECT UIDVALIDITY")
    check(b"[UIDNEXT 5]" in sel, "SELECT UIDNEXT")
    check(b"[READ-WRITE]" in tagged, f"SELECT READ-WRITE {tagged}")
    check(b"$Important" in sel, "keyword in FLAGS/PERMANENTFLAGS")

    untagged, _ = r.ok("FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)")
    f = joined(untagged)
    check(b"\\Flagged" in f and b"$Important" in f, f"APPENDed flags {f}")
    # The same instant; the zone may be normalised.
    check(b'INTERNALDATE "07-Feb-1994 21:52:25 -0800"' in f or b'INTERNALDATE "08-Feb-1994 05:52:25 +0000"' in f, "APPENDed date kept")
    check(b"RFC822.SIZE %d" % len(m1) in f, f"RFC822.SIZE {len(m1)}")
    check(b'ENVELOPE ("Mon, 7 Feb 1994 21:52:25 -0800" "first message" (("Carol" NIL "carol" "remote.test"))' in f, f"ENVELOPE {f}")

    untagged, _ = r.ok("FETCH 2 BODYSTRUCTURE")
    bs = joined(untagged)
    print(bs)
    check(b'("TEXT" "PLAIN" ("CHARSET" "us-ascii")' in bs.upper().replace(b'"US-ASCII"', b'"us-ascii"') or b'("TEXT" "PLAIN"' in bs.upper(), "text part in BODYSTRUCTURE")
    check(b'"APPLICATION" "OCTET-STREAM"' in bs.upper() and b'"BASE64"' in bs.upper(), "base64 part in BODYSTRUCTURE")
    check(b'"MIXED"' in bs.upper() and b'"BOUNDARY" "XYZ"' in bs.upper(), "multipart/mixed with its boundary")

    untagged, _ = r.ok("FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]")
    f = joined(untagged)
    check(b"BODY[HEADER.FIELDS (SUBJECT)] {" in f and b"Subject: first message\r\n\r\n" in f, f"HEADER.FIELDS {f}")
    untagged, _ = r.ok("FETCH 1 FLAGS")
    check(b"\\Seen" not in joined(untagged), "PEEK leaves \\Seen alone")
    untagged, _ = r.ok("FETCH 2 BODY.PEEK[1]")
    f = joined(untagged)
    check(b"BODY[1] {13}\r\nthe text part)" in f, f"BODY[1] (the CRLF before the boundary is not the part's) {f}")
    untagged, _ = r.ok("FETCH 1 BODY.PEEK[]<0.10>")
    f = joined(untagged)
    check(b"BODY[]<0> {10}\r\n" + m1[:10] in f, f"partial {f}")
    untagged, _ = r.ok("FETCH 2 BINARY.PEEK[2]")
    f = joined(untagged)
    payload = b"\x00\x01binary payload\xff"
    check((b"BINARY[2] ~{%d}\r\n" % len(payload)) + payload in f or (b"BINARY[2] {%d}\r\n" % len(payload)) + payload in f, f"BINARY[2] decoded {f!r}")
    untagged, _ = r.ok("FETCH 2 BINARY.SIZE[2]")
    check(b"BINARY.SIZE[2] %d" % len(payload) in joined(untagged), f"BINARY.SIZE {untagged}")
    untagged, _ = r.ok("FETCH 1 BODY[]")
    f = joined(untagged)
    check(m1 in f, "BODY[] is the message")
    check(b"\\Seen" in f, f"BODY[] reports \\Seen in the same response: {f[:80]!r}...")
    untagged, _ = r.ok("FETCH 1 FLAGS")
    check(b"\\Seen" in joined(untagged), "BODY[] set \\Seen")
    untagged, _ = r.ok("UID FETCH 3:4 (UID FLAGS)")
    f = joined(untagged)
    check(b"UID 3" in f and b"UID 4" in f and b"\\Draft" in f, f"MULTIAPPEND flags {f}")
    r.ok("LOGOUT")
    r.close()

    # imaplib reads the same over 993.
    m = imaplib.IMAP4_SSL(HOST, p993, ssl_context=tls_ctx(), timeout=10)
    m.login(ALICE, PASSWORD)
    typ, data = m.select("INBOX", readonly=True)
    check(typ == "OK" and data[0] == b"4", f"imaplib EXAMINE {data}")
    typ, data = m.fetch("2", "(BODY.PEEK[1])")
    check(data[0][1] == b"the text part", f"imaplib BODY[1] {data}")
    m.logout()


# ------------------------------------------------------------------ 5-6: STORE, SEARCH, SORT, THREAD


def store_search(p143, p993):
    r = Raw(p143)
    r.login()
    msgs = [
        msg("banana split", "yellow fruit\r\n", frm="Zed <zed@remote.test>", date="Wed, 3 Jan 2024 10:00:00 +0000"),
        msg("Apple pie", "green fruit\r\n", frm="Amy <amy@remote.test>", date="Mon, 1 Jan 2024 10:00:00 +0000"),
        msg("cherry tart", "red fruit and more\r\n", frm="Bob <bob@remote.test>", date="Tue, 2 Jan 2024 10:00:00 +0000"),
    ]
    for m in msgs:
        r.ok("APPEND INBOX", m)
    # A thread of three: root, a reply, a reply to the reply.
    root = b"From: T <t@remote.test>\r\nSubject: thread root\r\nDate: Thu, 4 Jan 2024 10:00:00 +0000\r\nMessage-ID: <root@t>\r\n\r\nroot\r\n"
    reply = b"From: U <u@remote.test>\r\nSubject: Re: thread root\r\nDate: Thu, 4 Jan 2024 11:00:00 +0000\r\nMessage-ID: <reply@t>\r\nIn-Reply-To: <root@t>\r\nReferences: <root@t>\r\n\r\nreply\r\n"
    reply2 = b"From: T <t@remote.test>\r\nSubject: Re: thread root\r\nDate: Thu, 4 Jan 2024 12:00:00 +0000\r\nMessage-ID: <reply2@t>\r\nIn-Reply-To: <reply@t>\r\nReferences: <root@t> <reply@t>\r\n\r\nreply 2\r\n"
    for m in (root, reply, reply2):
        r.ok("APPEND INBOX", m)
    r.ok("ENABLE CONDSTORE")
    r.ok("SELECT INBOX")

    # STORE.
    untagged, _ = r.ok("STORE 1 +FLAGS (\\Flagged $Label1)")
    check(b"* 1 FETCH" in joined(untagged) and b"$Label1" in joined(untagged), f"+FLAGS {untagged}")
    untagged, _ = r.ok("STORE 1 -FLAGS.SILENT (\\Flagged)")
    check(not any(b"FETCH" in l and b"FLAGS" in l and b"MODSEQ" not in l for l in untagged), f"-FLAGS.SILENT says nothing (but MODSEQ) {untagged}")
    untagged, _ = r.ok("FETCH 1 FLAGS")
    f = joined(untagged)
    check(b"$Label1" in f and b"\\Flagged" not in f, f"after -FLAGS {f}")
    untagged, _ = r.ok("STORE 2 FLAGS.SILENT (\\Answered Custom)")
    untagged, _ = r.ok("FETCH 2 FLAGS")
    f = joined(untagged)
    check(b"\\Answered" in f and b"Custom" in f, f"FLAGS replaced {f}")
    untagged, _ = r.ok("FETCH 1:* (UID MODSEQ)")
    modseqs = {int(a): int(b) for a, b in re.findall(rb"UID (\d+) MODSEQ \((\d+)\)", joined(untagged))}
    untagged, _ = r.ok("FETCH 1 FLAGS")
    check(b"PERMANENTFLAGS" not in joined(untagged), "no noise")
    # UNCHANGEDSINCE: message 1 changed since modseq(3)? use modseq of 3 for UIDs 1 and 3.
    since = modseqs[3]
    untagged, tagged = r.cmd("UID STORE 1,3 (UNCHANGEDSINCE %d) +FLAGS (\\Deleted)" % since)
    check(tagged.split()[1] == b"OK" and b"[MODIFIED 1]" in tagged, f"UNCHANGEDSINCE: {tagged} {untagged}")
    untagged, _ = r.ok("UID FETCH 1,3 FLAGS")
    f = joined(untagged)
    check(re.search(rb"UID 1 .*\\Deleted|\\Deleted.*UID 1 ", f.split(b"\r\n")[0]) is None, f"UID 1 unchanged {f}")
    r.ok("UID STORE 3 -FLAGS.SILENT (\\Deleted)")
    r.ok("STORE 3 +FLAGS.SILENT (\\Seen)")

    # SEARCH.
    def search(q):
        untagged, _ = r.ok(q)
        line = [l for l in untagged if l.startswith(b"* SEARCH") or l.startswith(b"* ESEARCH")]
        check(len(line) == 1, f"{q} -> {untagged}")
        return line[0].strip()

    check(search("SEARCH ALL") == b"* SEARCH 1 2 3 4 5 6", "SEARCH ALL")
    check(search("SEARCH SUBJECT apple") == b"* SEARCH 2", "SEARCH SUBJECT (case-insensitive)")
    check(search("SEARCH FROM zed") == b"* SEARCH 1", "SEARCH FROM")
    check(search('SEARCH BODY "red fruit"') == b"* SEARCH 3", "SEARCH BODY")
    check(search("SEARCH UNSEEN") == b"* SEARCH 1 2 4 5 6", "SEARCH UNSEEN")
    check(search("UID SEARCH UID 2:4") == b"* SEARCH 2 3 4", "UID SEARCH UID 2:4")
    check(search("SEARCH UID 5:*") == b"* SEARCH 5 6", "SEARCH UID 5:*")
    check(search("SEARCH KEYWORD $Label1") == b"* SEARCH 1", "SEARCH KEYWORD")
    check(search("SEARCH OR FROM amy FROM bob") == b"* SEARCH 2 3", "SEARCH OR")
    es = search("SEARCH RETURN (MIN MAX COUNT) UNSEEN")
    check(re.match(rb'\* ESEARCH \(TAG "t\d+"\) MIN 1 MAX 6 COUNT 5$', es) is not None, f"ESEARCH {es}")
    es = search("UID SEARCH RETURN (ALL) 1:3")
    check(re.match(rb'\* ESEARCH \(TAG "t\d+"\) UID ALL 1:3$', es) is not None, f"ESEARCH ALL {es}")
    untagged, tagged = r.ok("SEARCH RETURN (SAVE) SUBJECT thread")
    check(not any(b"SEARCH" in l for l in untagged), f"SAVE alone returns nothing {untagged}")
    untagged, _ = r.ok("FETCH $ (UID)")
    check(re.findall(rb"\* (\d+) FETCH \(UID (\d+)\)", joined(untagged)) == [(b"4", b"4"), (b"5", b"5"), (b"6", b"6")], f"FETCH $ {untagged}")

    # SORT.
    untagged, _ = r.ok("SORT (REVERSE DATE) UTF-8 ALL")
    check(joined(untagged).strip() == b"* SORT 6 5 4 1 3 2", f"SORT REVERSE DATE {untagged}")
    untagged, _ = r.ok("SORT (SUBJECT) UTF-8 ALL")
    # Base subjects: apple pie, banana split, cherry tart, thread root x3 (ties by sequence).
    check(joined(untagged).strip() == b"* SORT 2 1 3 4 5 6", f"SORT SUBJECT {untagged}")
    untagged, _ = r.ok("UID SORT (FROM) UTF-8 ALL")
    # amy, bob, t, t, u, zed (ties by sequence number).
    check(joined(untagged).strip() == b"* SORT 2 3 4 6 5 1", f"UID SORT FROM {untagged}")
    # THREAD.
    untagged, _ = r.ok("THREAD REFERENCES UTF-8 ALL")
    t = joined(untagged).strip()
    # Threads by their first message's date: 2 (1 Jan), 3 (2 Jan), 1 (3 Jan), 4 5 6 (4 Jan).
    check(t == b"* THREAD (2)(3)(1)(4 5 6)", f"THREAD REFERENCES {t}")
    untagged, _ = r.ok("THREAD ORDEREDSUBJECT UTF-8 ALL")
    t = joined(untagged).strip()
    check(t == b"* THREAD (2)(3)(1)(4 (5)(6))", f"THREAD ORDEREDSUBJECT {t}")

    # imaplib SEARCH/SORT work too.
    m = imaplib.IMAP4(HOST, p143, timeout=10)
    m.login(ALICE, PASSWORD)
    m.select("INBOX")
    typ, data = m.search(None, "SUBJECT", '"thread root"')
    check(data == [b"4 5 6"], f"imaplib SEARCH {data}")
    typ, data = m.sort("(DATE)", "UTF-8", "ALL")
    check(data == [b"2 3 1 4 5 6"], f"imaplib SORT DATE {data}")
    typ, data = m.thread("REFERENCES", "UTF-8", "ALL")
    check(typ == "OK" and b"(4 5 6)" in data[0], f"imaplib THREAD {data}")
    m.logout()


# ------------------------------------------------------------------ 7: COPY, MOVE, EXPUNGE


def copy_move(p143, p993):
    r = Raw(p143)
    r.login()
    for i in range(1, 7):
        r.ok("APPEND INBOX", msg(f"m{i}"))
    r.ok("SELECT INBOX")
    _, tagged = r.ok("COPY 1:2 Archive")
    m = re.search(rb"\[COPYUID (\d+) 1:2 1:2\]", tagged)
    check(m is not None, f"COPYUID {tagged}")
    _, tagged = r.ok("UID COPY 3 Archive")
    check(b" 3 3]" in tagged, f"UID COPY COPYUID {tagged}")
    _, tagged = r.cmd("COPY 1 Nowhere")
    check(b"NO [TRYCREATE]" in tagged, f"COPY to a missing mailbox {tagged}")
    untagged, tagged = r.ok("MOVE 2 Trash")
    u = joined(untagged)
    check(b"* OK [COPYUID " in u or b"[COPYUID" in tagged, f"MOVE COPYUID {untagged} {tagged}")
    check(b"* 2 EXPUNGE" in u, f"MOVE sends EXPUNGE {u}")
    untagged, _ = r.ok("SEARCH ALL")
    check(joined(untagged).strip() == b"* SEARCH 1 2 3 4 5", f"MOVE removed from the source {untagged}")
    untagged, tagged = r.ok("UID MOVE 5:6 Junk")
    check(joined(untagged).count(b" EXPUNGE") == 2, f"UID MOVE 2 EXPUNGEs {untagged}")
    untagged, _ = r.ok("UID SEARCH ALL")
    check(joined(untagged).strip() == b"* SEARCH 1 3 4", f"after UID MOVE {untagged}")
    # UID EXPUNGE removes only the UIDs named.
    r.ok("STORE 1:2 +FLAGS.SILENT (\\Deleted)")
    untagged, _ = r.ok("UID EXPUNGE 3")
    check(joined(untagged).strip() == b"* 2 EXPUNGE", f"UID EXPUNGE 3 {untagged}")
    untagged, _ = r.ok("UID SEARCH ALL")
    check(joined(untagged).strip() == b"* SEARCH 1 4", f"after UID EXPUNGE {untagged}")
    untagged, _ = r.ok("EXPUNGE")
    check(joined(untagged).strip() == b"* 1 EXPUNGE", f"EXPUNGE {untagged}")
    untagged, _ = r.ok("UID SEARCH ALL")
    check(joined(untagged).strip() == b"* SEARCH 4", f"after EXPUNGE {untagged}")
    # CLOSE expunges silently.
    r.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    untagged, _ = r.ok("CLOSE")
    check(not any(b"EXPUNGE" in l for l in untagged), f"CLOSE is silent {untagged}")
    untagged, _ = r.ok("STATUS INBOX (MESSAGES)")
    check(b"MESSAGES 0" in joined(untagged), f"CLOSE expunged {untagged}")
    _, tagged = r.cmd("FETCH 1 FLAGS")
    check(tagged.split()[1] == b"BAD", f"no mailbox selected after CLOSE {tagged}")
    for name, n in [("Archive", 3), ("Trash", 1), ("Junk", 2)]:
        untagged, _ = r.ok(f"STATUS {name} (MESSAGES)")
        check(b"MESSAGES %d" % n in joined(untagged), f"{name} has {n} {untagged}")
    r.ok("EXAMINE Archive")
    untagged, _ = r.ok("FETCH 1:* BODY.PEEK[HEADER.FIELDS (SUBJECT)]")
    subjects = re.findall(rb"Subject: (m\d)", joined(untagged))
    check(subjects == [b"m1", b"m2", b"m3"], f"copies' contents {subjects}")
    _, tagged = r.cmd("EXPUNGE")
    check(tagged.split()[1] == b"NO", f"EXPUNGE in EXAMINE {tagged}")
    r.ok("LOGOUT")


# ------------------------------------------------------------------ 8: mailbox management, quota


def mailboxes(p143, p993):
    r = Raw(p143)
    r.login()
    r.ok("CREATE Projects/2024/Q1")
    untagged, _ = r.ok('LIST "" "Projects*"')
    names = re.findall(rb'\* LIST \(([^)]*)\) "([^"]*)" "?([^"\r]*)"?', joined(untagged))
    check({n[2] for n in names} == {b"Projects", b"Projects/2024", b"Projects/2024/Q1"}, f"CREATE with parents {names}")
    check(all(n[1] == b"/" for n in names), "delimiter /")
    check(b"\\HasChildren" in [n for n in names if n[2] == b"Projects"][0][0], f"\\HasChildren {names}")
    r.ok("SUBSCRIBE Projects/2024")
    r.ok("APPEND Projects/2024/Q1", msg("in a child"))
    r.ok("RENAME Projects Work")
    untagged, _ = r.ok('LIST "" "*"')
    l = joined(untagged)
    check(b"Projects" not in l and b"Work/2024/Q1" in l and b"Work/2024" in l, f"RENAME with children {l}")
    untagged, _ = r.ok("STATUS Work/2024/Q1 (MESSAGES)")
    check(b"MESSAGES 1" in joined(untagged), "messages follow the rename")
    untagged, _ = r.ok('LSUB "" "*"')
    print("LSUB after rename:", untagged)
    r.ok("SUBSCRIBE Work")
    untagged, _ = r.ok('LSUB "" "*"')
    check(any(l.rstrip().endswith(b"Work") or l.rstrip().endswith(b'"Work"') for l in untagged), f"LSUB {untagged}")
    untagged, _ = r.ok('LIST (SUBSCRIBED) "" "*"')
    check(b"\\Subscribed" in joined(untagged), f"LIST (SUBSCRIBED) {untagged}")
    r.ok("UNSUBSCRIBE Work")
    untagged, _ = r.ok('LSUB "" "Work"')
    check(untagged == [], f"UNSUBSCRIBE {untagged}")
    r.ok("DELETE Work/2024/Q1")
    untagged, _ = r.ok('LIST "" "Work*"')
    check(b"Q1" not in joined(untagged), "DELETE")
    _, tagged = r.cmd("DELETE Nowhere")
    check(tagged.split()[1] == b"NO", f"DELETE a missing mailbox {tagged}")
    _, tagged = r.cmd("DELETE INBOX")
    check(tagged.split()[1] == b"NO", f"DELETE INBOX {tagged}")
    _, tagged = r.cmd("CREATE INBOX")
    check(tagged.split()[1] == b"NO", f"CREATE INBOX {tagged}")

    m1 = msg("quota one", "x" * 1000 + "\r\n")
    r.ok("APPEND INBOX", m1)
    r.ok("APPEND INBOX (\\Seen)", msg("quota two"))
    untagged, _ = r.ok("STATUS INBOX (MESSAGES UNSEEN UIDNEXT SIZE HIGHESTMODSEQ)")
    st = joined(untagged)
    size = len(m1) + len(msg("quota two"))
    check(re.search(rb"MESSAGES 2", st) and re.search(rb"UNSEEN 1", st) and re.search(rb"UIDNEXT 3", st), f"STATUS {st}")
    check(b"SIZE %d" % size in st, f"STATUS SIZE {size}: {st}")
    check(re.search(rb"HIGHESTMODSEQ \d+", st), f"STATUS HIGHESTMODSEQ {st}")
    untagged, _ = r.ok('LIST "" "*" RETURN (STATUS (MESSAGES))')
    st = joined(untagged)
    check(re.search(rb'\* STATUS "?INBOX"? \(MESSAGES 2\)', st), f"LIST RETURN STATUS {st}")
    check(re.search(rb'\* STATUS "?Trash"? \(MESSAGES 0\)', st), f"LIST RETURN STATUS Trash {st}")
    untagged, _ = r.ok("NAMESPACE")
    check(joined(untagged).strip() == b'* NAMESPACE (("" "/")) NIL NIL', f"NAMESPACE {untagged}")
    untagged, _ = r.ok("GETQUOTAROOT INBOX")
    q = joined(untagged)
    check(re.search(rb'\* QUOTAROOT "?INBOX"? "?[^\r]*', q), f"QUOTAROOT {q}")
    m = re.search(rb"STORAGE (\d+) (\d+)", q)
    check(m is not None and int(m.group(2)) == 19 or (m and int(m.group(2)) == 20), f"STORAGE limit in KiB (20000 bytes) {q}")
    check(m is not None and int(m.group(1)) == (size + 1023) // 1024 or (m and int(m.group(1)) == size // 1024), f"STORAGE usage {q}")
    big = msg("too big", "y" * 19000 + "\r\n")
    _, tagged = r.cmd("APPEND INBOX", big)
    check(b"NO [OVERQUOTA]" in tagged, f"APPEND over quota {tagged}")
    untagged, _ = r.ok("STATUS INBOX (MESSAGES)")
    check(b"MESSAGES 2" in joined(untagged), "nothing appended over quota")
    r.ok("LOGOUT")


# ------------------------------------------------------------------ 9-10: QRESYNC, IDLE


def idle_wait(r, pattern, limit):
    """Reads untagged lines in IDLE until one matches; returns (line, seconds)."""
    t0 = time.time()
    while True:
        try:
            l = r.line(limit - (time.time() - t0))
        except socket.timeout:
            check(False, f"nothing matching {pattern!r} within {limit}s")
        if re.search(pattern, l):
            return l, time.time() - t0
        print("idle got", l)


def start_idle(r):
    r.n += 1
    tag = "t%d" % r.n
    r.send(tag + " IDLE\r\n")
    l = r.line()
    check(l.startswith(b"+ "), f"IDLE continuation {l}")
    return tag


def stop_idle(r, tag):
    r.send("DONE\r\n")
    untagged, tagged = r.read_until_tagged(tag)
    check(tagged.startswith(tag.encode() + b" OK"), f"IDLE ends {tagged}")
    return untagged


def qresync_idle(p143, p993, p143b=None):
    a = Raw(p143)
    a.login()
    for i in range(1, 5):
        a.ok("APPEND INBOX", msg(f"q{i}"))
    untagged, _ = a.ok("ENABLE CONDSTORE QRESYNC")
    check(b"* ENABLED" in joined(untagged) and b"QRESYNC" in joined(untagged), f"ENABLE {untagged}")
    untagged, _ = a.ok("SELECT INBOX")
    sel = joined(untagged)
    uidvalidity = int(re.search(rb"UIDVALIDITY (\d+)", sel).group(1))
    modseq = int(re.search(rb"HIGHESTMODSEQ (\d+)", sel).group(1))
    untagged, _ = a.ok("FETCH 1:* (FLAGS MODSEQ)")
    check(joined(untagged).count(b"MODSEQ (") == 4, f"FETCH MODSEQ {untagged}")
    a.ok("LOGOUT")
    # Another session expunges 2 and flags 3.
    b = Raw(p993, tls=True)
    b.login()
    b.ok("SELECT INBOX")
    b.ok("UID STORE 2 +FLAGS.SILENT (\\Deleted)")
    b.ok("UID EXPUNGE 2")
    b.ok("UID STORE 3 +FLAGS.SILENT (\\Answered)")
    b.ok("LOGOUT")
    a = Raw(p143)
    a.login()
    a.ok("ENABLE QRESYNC")
    untagged, _ = a.ok("SELECT INBOX (QRESYNC (%d %d 1:4))" % (uidvalidity, modseq))
    sel = joined(untagged)
    check(b"* VANISHED (EARLIER) 2\r\n" in sel, f"VANISHED (EARLIER) {sel}")
    check(re.search(rb"\* 2 FETCH \((?=.*UID 3)(?=.*\\Answered)", sel), f"changed flags of UID 3 {sel}")
    check(b"* 3 EXISTS" in sel, "3 left")
    untagged, _ = a.ok("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % modseq)
    f = joined(untagged)
    check(b"* VANISHED (EARLIER) 2" in f and b"UID 3" in f and b"UID 1 " not in f, f"UID FETCH CHANGEDSINCE VANISHED {f}")
    _, tagged = a.cmd("SELECT INBOX (QRESYNC (%d %d))" % (uidvalidity + 1, modseq))
    check(tagged.split()[1] == b"OK", f"QRESYNC with another UIDVALIDITY still selects {tagged}")

    # IDLE: B appends, A hears EXISTS within 1 s; B changes flags, A hears FETCH.
    a.ok("SELECT INBOX")
    b = Raw(p993, tls=True)
    b.login()
    b.ok("SELECT INBOX")
    tag = start_idle(a)
    t0 = time.time()
    b.ok("APPEND INBOX", msg("while idle"))
    line, _ = idle_wait(a, rb"^\* 4 EXISTS", 5)
    took = time.time() - t0
    print("IDLE EXISTS after %.3fs" % took)
    check(took < 1.0, f"EXISTS within 1 s ({took:.3f}s)")
    b.ok("NOOP")
    t0 = time.time()
    b.ok("STORE 1 +FLAGS.SILENT (\\Flagged)")
    line, _ = idle_wait(a, rb"^\* 1 FETCH .*FLAGS", 5)
    took = time.time() - t0
    check(b"\\Flagged" in line, f"IDLE FETCH FLAGS {line}")
    check(took < 1.0, f"FETCH FLAGS within 1 s ({took:.3f}s)")
    # An expunge by B reaches A as EXPUNGE (or VANISHED with QRESYNC).
    b.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    b.ok("EXPUNGE")
    # A has QRESYNC enabled: VANISHED, never EXPUNGE (RFC 7162 3.2.10).
    line, _ = idle_wait(a, rb"^\* (\d+ EXPUNGE|VANISHED)", 5)
    check(line == b"* VANISHED 1\r\n", f"expunge in IDLE under QRESYNC: {line}")
    stop_idle(a, tag)
    untagged, _ = a.ok("SEARCH ALL")
    check(joined(untagged).strip() == b"* SEARCH 1 2 3", f"A's view after IDLE {untagged}")
    # imaplib's IDLE-less polling: NOOP on A sees an append by B.
    b.ok("APPEND INBOX", msg("noop"))
    untagged, _ = a.ok("NOOP")
    check(b"* 4 EXISTS" in joined(untagged), f"NOOP sees B's append {untagged}")
    a.ok("LOGOUT")
    b.ok("LOGOUT")


def uid_set(text):
    """The UIDs of a sequence set such as b"2:3,5"."""
    out = set()
    for part in text.decode().split(","):
        lo, _, hi = part.partition(":")
        lo, hi = int(lo), int(hi or lo)
        out.update(range(min(lo, hi), max(lo, hi) + 1))
    return out


def vanished_earlier(untagged):
    m = re.search(rb"\* VANISHED \(EARLIER\) (\S+)\r\n", joined(untagged))
    return uid_set(m.group(1)) if m else set()


def purged_tombstones(p143, p993):
    """Six messages; session B selects INBOX and stays; A expunges 2, 3 and 5. The client
    prints PURGE and waits for PURGED on stdin while the test purges every tombstone; then B,
    a QRESYNC SELECT and a CHANGEDSINCE VANISHED fetch, all from below the floor, still learn
    of every expunge."""
    a = Raw(p143)
    a.login()
    for i in range(1, 7):
        a.ok("APPEND INBOX", msg(f"p{i}"))
    a.ok("ENABLE QRESYNC")
    untagged, _ = a.ok("SELECT INBOX")
    sel = joined(untagged)
    uidvalidity = int(re.search(rb"UIDVALIDITY (\d+)", sel).group(1))
    modseq = int(re.search(rb"HIGHESTMODSEQ (\d+)", sel).group(1))
    b = Raw(p143)
    b.login()
    untagged, _ = b.ok("SELECT INBOX")
    check(b"* 6 EXISTS" in joined(untagged), "B sees six messages")
    a.ok("UID STORE 2:3,5 +FLAGS.SILENT (\\Deleted)")
    a.ok("UID EXPUNGE 2:3,5")
    a.ok("LOGOUT")
    print("PURGE", flush=True)
    check(sys.stdin.readline().strip() == "PURGED", "the test purged the tombstones")

    # B knows the mailbox from before the floor: it compares UIDs and hears three EXPUNGEs.
    untagged, _ = b.ok("NOOP")
    check(joined(untagged).count(b" EXPUNGE\r\n") == 3, f"B hears 3 expunges: {untagged}")
    untagged, _ = b.ok("UID FETCH 1:* (UID)")
    uids = sorted(int(u) for u in re.findall(rb"UID (\d+)", joined(untagged)))
    check(uids == [1, 4, 6], f"B has UIDs 1, 4, 6: {uids}")
    b.ok("LOGOUT")

    c = Raw(p993, tls=True)
    c.login()
    c.ok("ENABLE QRESYNC")
    # The node's view of INBOX was read before the floor: it must not be used.
    untagged, _ = c.ok("SELECT INBOX (QRESYNC (%d %d))" % (uidvalidity, modseq))
    check(b"* 3 EXISTS" in joined(untagged), f"3 messages left: {untagged}")
    gone = vanished_earlier(untagged)
    check({2, 3, 5} <= gone and not gone & {1, 4, 6}, f"QRESYNC VANISHED (EARLIER) {gone}")
    untagged, _ = c.ok("SELECT INBOX (QRESYNC (%d %d 1:4))" % (uidvalidity, modseq))
    gone = vanished_earlier(untagged)
    check(gone == {2, 3}, f"QRESYNC VANISHED (EARLIER) within the known UIDs 1:4: {gone}")
    untagged, _ = c.ok("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % modseq)
    gone = vanished_earlier(untagged)
    check({2, 3, 5} <= gone and not gone & {1, 4, 6}, f"CHANGEDSINCE VANISHED {gone}")
    untagged, _ = c.ok("UID FETCH 4:6 (FLAGS) (CHANGEDSINCE %d VANISHED)" % modseq)
    gone = vanished_earlier(untagged)
    check(gone == {5}, f"CHANGEDSINCE VANISHED within 4:6: {gone}")
    c.ok("LOGOUT")
    print("DONE", flush=True)


def idle_deliver(p143, p993):
    """IDLE on INBOX; prints IDLING, then EXISTS n for each EXISTS until 4, for imap.rs."""
    r = Raw(p143)
    r.login()
    r.ok("SELECT INBOX")
    tag = start_idle(r)
    print("IDLING", flush=True)
    while True:
        l = r.line(30)
        m = re.match(rb"\* (\d+) EXISTS", l)
        if m:
            print("EXISTS", m.group(1).decode(), flush=True)
            if int(m.group(1)) >= 4:
                break
        else:
            print("got", l, flush=True)
    stop_idle(r, tag)
    r.ok("LOGOUT")


# ------------------------------------------------------------------ 11: two nodes


def two_nodes(p143, p993, q143, q993):
    a = Raw(p143)
    a.login()
    b = Raw(q993, tls=True)
    b.login()
    a.ok("APPEND INBOX", msg("seed"))
    a.ok("SELECT INBOX")
    b.ok("SELECT INBOX")
    tag = start_idle(b)
    # Node B's poller learns the mailbox's MODSEQ at its first poll after the SELECT and
    # reports nothing that happened before it (see the report: a change made on node A
    # within that first poll interval is lost). Wait until a flag change from A reaches B's
    # IDLE before timing anything.
    deadline = time.time() + 10
    for i in range(100):
        a.ok(f"STORE 1 +FLAGS.SILENT ($warm{i})")
        try:
            l = b.line(0.5)
            print("warm-up reached B:", l)
            break
        except socket.timeout:
            check(time.time() < deadline, "a change from node A reaches node B's IDLE")
    t0 = time.time()
    a.ok("APPEND INBOX", msg("from node A"))
    line, _ = idle_wait(b, rb"^\* 2 EXISTS", 5)
    took = time.time() - t0
    print("cross-node IDLE EXISTS after %.3fs" % took)
    check(took < 1.0, f"node B told within 1 s ({took:.3f}s)")
    t0 = time.time()
    a.ok("STORE 1 +FLAGS.SILENT (\\Answered)")
    line, _ = idle_wait(b, rb"^\* 1 FETCH .*\\Answered", 5)
    check(time.time() - t0 < 1.0, "cross-node flag change within 1 s")
    stop_idle(b, tag)
    untagged, _ = b.ok("FETCH 2 BODY.PEEK[HEADER.FIELDS (SUBJECT)]")
    check(b"from node A" in joined(untagged), "node B reads node A's blob")

    # Concurrent STOREs of different flags on one message, from both nodes.
    for round_ in range(5):
        kw_a, kw_b = f"$a{round_}", f"$b{round_}"
        barrier = threading.Barrier(2)
        errs = []

        def go(conn, kw):
            try:
                barrier.wait(5)
                conn.ok(f"STORE 2 +FLAGS.SILENT ({kw})")
            except BaseException as e:  # noqa
                errs.append(e)

        ts = [threading.Thread(target=go, args=(a, kw_a)), threading.Thread(target=go, args=(b, kw_b))]
        [t.start() for t in ts]
        [t.join(10) for t in ts]
        check(not errs and not any(t.is_alive() for t in ts), f"concurrent STOREs finished {errs}")
        for conn, name in ((a, "A"), (b, "B")):
            conn.ok("NOOP")
            untagged, _ = conn.ok("FETCH 2 FLAGS")
            f = joined(untagged)
            check(kw_a.encode() in f and kw_b.encode() in f, f"node {name} sees the union, round {round_}: {f}")
    a.ok("LOGOUT")
    b.ok("LOGOUT")


# ------------------------------------------------------------------ 12: robustness


def still_serving(p143):
    r = Raw(p143)
    r.login()
    r.ok("SELECT INBOX")
    r.ok("LOGOUT")
    r.close()


def robustness(p143, p993):
    # A 100 KB line.
    r = Raw(p143)
    r.login()
    try:
        r.send(b"t1 NOOP " + b"x" * 100_000 + b"\r\n")
        l = r.line()
        check(l.startswith(b"t1 BAD") or l.startswith(b"* BAD") or l.startswith(b"* BYE"), f"100 KB line: {l[:100]}")
        print("100 KB line ->", l[:100])
        try:
            _, tagged = r.cmd("NOOP")
            print("after the long line:", tagged)
        except (EOFError, OSError) as e:
            print("closed after the long line:", e)
    except (EOFError, OSError) as e:
        print("100 KB line: connection closed", e)
    r.close()
    still_serving(p143)

    # A 4 GiB literal: refused before any of it is read.
    r = Raw(p143)
    r.login()
    r.send("t1 APPEND INBOX {4294967296}\r\n")
    l = r.line()
    check(re.match(rb"t1 (NO \[TOOBIG\]|BAD)", l) is not None, f"4 GiB APPEND: {l}")
    _, tagged = r.cmd("NOOP")
    check(tagged.split()[1] == b"OK", f"session goes on after the refused literal {tagged}")
    # Also just past APPENDLIMIT.
    r.send("t9 APPEND INBOX {52428801}\r\n")
    l = r.line()
    check(re.match(rb"t9 (NO \[TOOBIG\]|BAD)", l) is not None, f"APPENDLIMIT+1: {l}")
    _, tagged = r.cmd("NOOP")
    check(tagged.split()[1] == b"OK", f"session goes on {tagged}")

    # 200 nested parentheses in SEARCH.
    r.ok("SELECT INBOX")
    _, tagged = r.cmd("SEARCH " + "(" * 200 + "ALL" + ")" * 200)
    check(tagged.split()[1] == b"BAD", f"deep SEARCH: {tagged}")
    _, tagged = r.cmd("SEARCH " + "NOT " * 200 + "ALL")
    check(tagged.split()[1] in (b"BAD", b"NO"), f"200 NOTs: {tagged}")
    # Garbage.
    r.send(b"\x00\xff\xfe garbage \x01\x02\r\n")
    l = r.line()
    check(b"BAD" in l, f"garbage: {l}")
    r.send(b"t50 FROBNICATE\r\n")
    l = r.line()
    check(l.startswith(b"t50 BAD"), f"unknown command: {l}")
    r.send(b"t51 FETCH\r\n")
    l = r.line()
    check(l.startswith(b"t51 BAD"), f"FETCH without arguments: {l}")
    r.send(b"t52 FETCH 1:* (BODY[\r\n")
    l = r.line()
    check(l.startswith(b"t52 BAD"), f"unclosed section: {l}")
    _, tagged = r.cmd("NOOP")
    check(tagged.split()[1] == b"OK", f"still in step after garbage {tagged}")
    r.close()
    # Garbage before login and over TLS.
    r = Raw(p993, tls=True)
    r.send(b"\xde\xad\xbe\xef\r\n")
    check(b"BAD" in r.line(), "garbage over TLS")
    r.login()
    r.close()
    # Raw garbage as a TLS ClientHello on 993 does not hurt the server.
    s = socket.create_connection((HOST, p993), timeout=10)
    s.sendall(b"\x16\x03\x01\x00\x05hello" * 10)
    try:
        s.recv(100)
    except OSError:
        pass
    s.close()
    still_serving(p143)


# ------------------------------------------------------------------ 13: curl seed


def seed_for_curl(p143, p993):
    r = Raw(p143)
    r.login()
    r.ok("APPEND INBOX", msg("curl one", "first body line\r\n"))
    r.ok("APPEND INBOX", msg("curl two", "second\r\n"))
    r.ok("LOGOUT")



# ------------------------------------------------------------------ more: sessions, literals, lockout

def sessions_more(p143, p993):
    r = Raw(p143)
    r.login()
    # Pipelining and LITERAL+.
    r.send(b"p1 NOOP\r\np2 APPEND INBOX {%d+}\r\n%s\r\np3 NOOP\r\n" % (len(msg("lp")), msg("lp")))
    u, t = r.read_until_tagged("p3")
    check(b"p1 OK" in joined(u) and b"p2 OK [APPENDUID" in joined(u), f"pipelined with LITERAL+ {u} {t}")
    big = msg("nonsync", "q" * 20000 + "\r\n")
    r.send(b"p4 APPEND INBOX {%d+}\r\n%s\r\n" % (len(big), big))
    u, t = r.read_until_tagged("p4")
    print("APPEND with a 20 KB LITERAL+ ->", t)
    u, t = r.cmd("APPEND INBOX (\\Recent)", msg("recent"))
    print("APPEND (\\Recent) ->", t)
    u, t = r.cmd('APPEND INBOX "32-Foo-2020 00:00:00 +0000"', msg("date"))
    check(b" BAD" in t or b" NO" in t, f"APPEND with a bad date {t}")
    u, t = r.cmd("APPEND INBOX", b"")
    print("APPEND of an empty message ->", t)
    u, t = r.cmd('LIST (SPECIAL-USE) "" "*"')
    check(len(u) == 5, f"LIST (SPECIAL-USE) {u}")
    u, t = r.cmd('LIST "" "*" RETURN (SPECIAL-USE CHILDREN)')
    print("RETURN (SPECIAL-USE) ->", u)
    u, t = r.cmd("CREATE MyArchive (USE (\\Archive))")
    u2, _ = r.cmd('LIST "" MyArchive')
    check(b" OK" in t and b"\\Archive" in joined(u2), f"CREATE USE (\\Archive) {t} {u2}")
    u, t = r.cmd("CREATE Other (USE (\\Nonsense))")
    check(b"NO [USEATTR]" in t or b" BAD" in t, f"CREATE with a bad USE {t}")
    u, t = r.cmd("STATUS INBOX (APPENDLIMIT MAILBOXID DELETED SIZE)")
    print("STATUS extras ->", u, t)
    u, t = r.cmd("SELECT INBOX (CONDSTORE)")
    check(b"HIGHESTMODSEQ" in joined(u), f"SELECT (CONDSTORE) {u}")
    u, t = r.cmd("SORT RETURN (MIN MAX COUNT) (ARRIVAL) UTF-8 ALL")
    check(re.match(rb'\* ESEARCH \(TAG "t\d+"\) MIN 1 MAX 4 COUNT 4\r\n$', joined(u)), f"ESORT {u} {t}")
    u, t = r.cmd("STORE 1 +FLAGS (\\Seen)")
    check(b"MODSEQ" in joined(u), f"STORE after CONDSTORE carries MODSEQ {u}")
    # Another session expunges while this one runs FETCH / NOOP.
    b = Raw(p143)
    b.login()
    b.ok("SELECT INBOX")
    b.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    b.ok("EXPUNGE")
    # RFC 9051 7.5.1: no EXPUNGE while answering FETCH, STORE or SEARCH (UID forms may).
    u, t = r.cmd("FETCH 1:* (UID)")
    check(not any(b"EXPUNGE" in l for l in u), f"no EXPUNGE during FETCH {u}")
    u, t = r.cmd("STORE 2 +FLAGS (\\Answered)")
    check(not any(b"EXPUNGE" in l for l in u), f"no EXPUNGE during STORE {u}")
    u, t = r.cmd("SEARCH ALL")
    check(not any(b"EXPUNGE" in l for l in u), f"no EXPUNGE during SEARCH {u}")
    u, t = r.cmd("NOOP")
    check(b"* 1 EXPUNGE" in joined(u), f"EXPUNGE at NOOP {u}")
    u, t = r.cmd("UID SEARCH RETURN (SAVE) ALL")
    u, t = r.cmd("UID SEARCH UID $")
    check(joined(u).strip() == b"* SEARCH 2 3 4", f"UID SEARCH UID $ {u} {t}")
    u, t = r.cmd("UID SEARCH RETURN (SAVE) SUBJECT nomatch")
    u, t = r.cmd("FETCH $ UID")
    check(t.split()[1] == b"OK" and u == [], f"FETCH $ of an empty result {u} {t}")
    # IDLE with garbage instead of DONE.
    tag = start_idle(r)
    r.send("NOPE\r\n")
    u, t = r.read_until_tagged(tag)
    check(b" BAD" in t, f"IDLE ended by garbage {t}")
    u, t = r.cmd("NOOP")
    check(b" OK" in t, f"in step after IDLE garbage {t}")
    # Quota and MULTIAPPEND.
    r.ok("LOGOUT")
    # Lockout: 5 wrong passwords then the right one.
    for i in range(6):
        x = Raw(p993, tls=True)
        _, t = x.cmd("LOGIN", BOB, "wrong")
        print("wrong", i, t)
        x.close()
    x = Raw(p993, tls=True)
    _, t = x.cmd("LOGIN", BOB, '"%s"' % PASSWORD)
    print("after lockout ->", t)
    check(b"NO [UNAVAILABLE]" in t, f"locked out after 5 failures {t}")



def fetch_more(p143, p993):
    r = Raw(p143)
    _, t = r.cmd("LOGIN", ALICE.encode(), PASSWORD.encode())
    check(b" OK" in t, f"LOGIN with literals {t}")
    r.ok("APPEND INBOX", MULTIPART)
    r.ok("APPEND INBOX", msg("plain one", "abc\r\n"))
    u, t = r.cmd("ID NIL")
    check(b"* ID (" in joined(u) and b" OK" in t, f"ID {u} {t}")
    r.ok("SELECT INBOX")
    header = MULTIPART[: MULTIPART.index(b"\r\n\r\n") + 4]
    text = MULTIPART[len(header):]
    for q, want in [
        ("FETCH 1 BODY.PEEK[HEADER]", b"BODY[HEADER] {%d}\r\n%s)" % (len(header), header)),
        ("FETCH 1 RFC822.HEADER", b"RFC822.HEADER {%d}\r\n%s)" % (len(header), header)),
        ("FETCH 1 BODY.PEEK[TEXT]", b"BODY[TEXT] {%d}\r\n%s)" % (len(text), text)),
        ("FETCH 1 BODY.PEEK[1.MIME]", b"BODY[1.MIME] {46}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n)"),
        ("FETCH 1 BODY.PEEK[]<100000.10>", b"BODY[]<100000> {0}\r\n)"),
        ("FETCH 1 BODY.PEEK[2]<0.4>", b"BODY[2]<0> {4}\r\nAAFi)"),
        ("FETCH 1 BINARY.PEEK[1]", b"BINARY[1] {13}\r\nthe text part)"),
        ("FETCH 1 BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT FROM TO DATE MESSAGE-ID)]",
         b'{68}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="XYZ"\r\n\r\n)'),
        ("FETCH 1 (BODY)", b'(BODY (("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 13 1)("APPLICATION" "OCTET-STREAM" ("NAME" "a.bin") NIL NIL "BASE64" 24) "MIXED"))'),
        ("FETCH 1 (PREVIEW)", b'(PREVIEW "the text part")'),
        ("FETCH 2 BODY.PEEK[1]", b"BODY[1] {5}\r\nabc\r\n)"),
        ("FETCH 2 RFC822.TEXT", b"RFC822.TEXT {5}\r\nabc\r\n FLAGS (\\Seen"),
    ]:
        u, t = r.ok(q)
        check(want in joined(u), f"{q} -> {joined(u)[:300]!r}")
    for q, want in [("SEARCH LARGER 300", b"* SEARCH 1"), ("SEARCH SMALLER 300", b"* SEARCH 2"),
                    ('SEARCH HEADER Subject "plain"', b"* SEARCH 2"), ("SEARCH SENTBEFORE 1-Jan-2000", b"* SEARCH 1 2"),
                    ("SEARCH SINCE 1-Jan-2000", b"* SEARCH 1 2"), ("SEARCH BEFORE 1-Jan-2000", b"* SEARCH"),
                    ("SEARCH NOT SEEN", b"* SEARCH 1"), ("SEARCH 2:*", b"* SEARCH 2"), ("SEARCH *", b"* SEARCH 2"),
                    ("SEARCH TEXT payload", b"* SEARCH"), ('SEARCH BODY "text part"', b"* SEARCH 1"),
                    ('SEARCH TEXT "Dave"', b"* SEARCH 1"), ("SEARCH CHARSET UTF-8 SUBJECT plain", b"* SEARCH 2"),
                    ("SEARCH RETURN (COUNT) BEFORE 1-Jan-2000", b"COUNT 0"), ("SEARCH YOUNGER 3600", b"* SEARCH 1 2"),
                    ("SEARCH OLDER 3600", b"* SEARCH"), ("SEARCH TO alice", b"* SEARCH 1 2"), ("SEARCH CC nobody", b"* SEARCH"),
                    ("SEARCH NEW", b"* SEARCH 1")]:
        u, t = r.ok(q)
        got = b"".join(l for l in u if b"SEARCH" in l).strip()
        check(got == want or (want.startswith(b"COUNT") and got.endswith(want)), f"{q} -> {got}")
    u, t = r.ok("SEARCH CHARSET UTF-8 SUBJECT", b"plain")
    check(b"* SEARCH 2" in joined(u), f"SEARCH with a literal {u}")
    u, t = r.cmd("SEARCH CHARSET X-UNKNOWN SUBJECT plain")
    check(b"NO [BADCHARSET" in t, f"unknown charset {t}")
    u, t = r.cmd("FETCH 99 FLAGS")
    check(b" BAD" in t, f"FETCH of a sequence number past the end {t}")
    u, t = r.cmd("UID FETCH 99 FLAGS")
    check(t.split()[1] == b"OK" and u == [], f"UID FETCH of a missing UID {u} {t}")
    u, t = r.ok("COPY 2 INBOX")
    check(b" 2 3]" in t and b"* 3 EXISTS" in joined(u), f"COPY into itself {u} {t}")
    r.ok("ENABLE QRESYNC")
    r.ok("SELECT INBOX")
    u, t = r.ok("MOVE 3 Trash")
    check(b"* VANISHED 3" in joined(u) and b"EXPUNGE" not in joined(u), f"MOVE under QRESYNC: VANISHED {u} {t}")
    r.ok("UNSELECT")
    r.ok('CREATE "&AOk-t&AOk-"')
    u, t = r.ok('LIST "" "&AOk-t&AOk-"')
    check(b'"/" &AOk-t&AOk-' in joined(u) or b'"/" "&AOk-t&AOk-"' in joined(u), f"mUTF-7 name round trip {u}")
    r.ok("CREATE Trailing/")
    u, _ = r.ok('LIST "" "Trailing*"')
    check(re.findall(rb'"/" "?(Trailing[^"\r]*)', joined(u)) == [b"Trailing"], f"CREATE Trailing/ {u}")
    u, t = r.ok('LIST "" "%"')
    check(not any(b"Trailing/" in l or b"t&AOk-/" in l for l in u), f"LIST % {u}")
    u, t = r.ok('LIST "" ""')
    check(b'* LIST (\\Noselect) "/" ""' in joined(u), f"LIST reference query {u}")
    u, t = r.ok("RENAME INBOX OldInbox")
    u2, _ = r.ok("STATUS OldInbox (MESSAGES)")
    u3, _ = r.ok("STATUS INBOX (MESSAGES)")
    check(b"MESSAGES 2" in joined(u2) and b"MESSAGES 0" in joined(u3), f"RENAME INBOX moves the messages {u2} {u3}")
    u, t = r.cmd("RENAME Sent Drafts")
    check(b"NO [ALREADYEXISTS]" in t, f"RENAME onto an existing name {t}")
    u, t = r.cmd("STATUS Nowhere (MESSAGES)")
    check(b"NO [NONEXISTENT]" in t, f"STATUS of a missing mailbox {t}")
    r.ok("SELECT INBOX")
    u, t = r.cmd("SELECT Nowhere")
    check(b"NO [NONEXISTENT]" in t, f"SELECT missing {t}")
    u, t = r.cmd("FETCH 1 FLAGS")
    check(b" BAD" in t, f"a failed SELECT leaves no mailbox selected {t}")
    big = msg("big", ("z" * 998 + "\r\n") * 3000)
    r.ok("APPEND INBOX", big)
    r.ok("SELECT INBOX")
    u, t = r.ok("UID FETCH 1:* (RFC822.SIZE BODY.PEEK[])")
    check(big in joined(u) and b"RFC822.SIZE %d" % len(big) in joined(u), f"3 MB back intact ({len(joined(u))} bytes)")
    r.ok("UNAUTHENTICATE")
    u, t = r.cmd("SELECT INBOX")
    check(b" BAD" in t, f"SELECT after UNAUTHENTICATE {t}")
    r.login(BOB)
    u, t = r.cmd("STATUS OldInbox (MESSAGES)")
    check(b"NO [NONEXISTENT]" in t, f"bob cannot see alice's mailboxes {t}")
    r.ok("LOGOUT")


def thread_chains(p143, p993):
    """THREAD of a mailbox large enough for the node to keep its answer (2,100 messages, 100
    reply chains): every change that changes which messages match (a message added from
    another session, a flag, an expunge) gives the fresh answer, never the kept one."""
    groups, per = 100, 21
    r = Raw(p143, timeout=120)
    r.login()
    r.ok("CREATE Chains")

    def chain_msg(j, group=None):
        g = j % groups if group is None else group
        prior = [k for k in range(g, j, groups)]
        refs = " ".join(f"<c{k}@chains.test>" for k in prior)
        day, sec = divmod(j, 86400)
        return (
            f"From: Carol <carol@remote.test>\r\nTo: {ALICE}\r\n"
            f"Subject: {'Re: ' if prior else ''}chain {g}\r\n"
            f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime(1600000000 + j * 60))}\r\n"
            f"Message-ID: <c{j}@chains.test>\r\n"
            + (f"References: {refs}\r\n" if refs else "")
            + "\r\nhello\r\n"
        ).encode()

    # MULTIAPPEND with non-synchronizing literals, 300 messages a command.
    n = groups * per
    for start in range(0, n, 300):
        r.n += 1
        tag = "t%d" % r.n
        buf = tag.encode() + b" APPEND Chains"
        for j in range(start, min(n, start + 300)):
            m = chain_msg(j)
            buf += b" {%d+}\r\n" % len(m) + m
        r.send(buf + b"\r\n")
        _, t = r.read_until_tagged(tag)
        check(t.split()[1] == b"OK", f"MULTIAPPEND of messages {start}.. {t[:80]!r}")

    def expected(uids):
        """One chain per group, groups in the order of their first messages' dates."""
        chains = {}
        for u in sorted(uids):
            chains.setdefault((u - 1) % groups, []).append(u)
        order = sorted(chains.values(), key=lambda c: c[0])
        return b"".join(b"(" + b" ".join(b"%d" % u for u in c) + b")" for c in order)

    def thread(cmd="UID THREAD REFERENCES UTF-8 ALL"):
        u, _ = r.ok(cmd)
        lines = [l for l in u if l.startswith(b"* THREAD")]
        check(len(lines) == 1, f"one THREAD answer to {cmd}")
        return lines[0][len(b"* THREAD "):].rstrip(b"\r\n")

    r.ok("SELECT Chains")
    uids = set(range(1, n + 1))
    first = thread()
    check(first == expected(uids), f"UID THREAD of {n} messages: {groups} chains ({len(first)} bytes)")
    check(thread() == first, "asked again: the same answer")
    check(thread("THREAD REFERENCES UTF-8 ALL") == first, "THREAD by sequence numbers (= UIDs here)")
    # A reply appended by another session: the next THREAD after it is seen has it.
    other = Raw(p143)
    other.login()
    other.ok("APPEND Chains", chain_msg(n, group=0))
    other.close()
    r.ok("NOOP")
    uids.add(n + 1)
    got = thread()
    check(got == expected(uids), "a reply appended elsewhere joins chain 0")
    # A flag changes which messages UNDELETED matches; ALL still has them all.
    r.ok("UID STORE 1001 +FLAGS.SILENT (\\Deleted)")
    check(thread("UID THREAD REFERENCES UTF-8 UNDELETED") == expected(uids - {1001}),
          "UNDELETED leaves the deleted message out of chain 0")
    check(thread() == got, "ALL still threads it")
    # Expunged: the chain closes over the gap (its References name the missing message's
    # parent), and sequence numbers shift.
    r.ok("EXPUNGE")
    uids.discard(1001)
    check(thread() == expected(uids), "after EXPUNGE the message is gone from chain 0")
    by_seq = thread("THREAD REFERENCES UTF-8 ALL")
    seq_of = {u: i + 1 for i, u in enumerate(sorted(uids))}
    want = expected(uids)
    want_seq = re.sub(rb"\d+", lambda m: b"%d" % seq_of[int(m.group(0))], want)
    check(by_seq == want_seq, "THREAD by sequence numbers after the expunge")
    r.ok("LOGOUT")


def append_acks(p143, p993):
    """APPENDs from clients that write a literal and what follows it in two writes with
    Nagle's algorithm on (Python's sockets and imaplib, like many clients): the second write
    waits until the first is acknowledged. The server must acknowledge a literal at once, not
    after the kernel's delayed-ACK timer (at least 40 ms on Linux), which made each such APPEND
    take 40+ ms. Medians, so a busy machine's occasional stall does not decide."""
    limit = 0.02  # half the shortest delayed ACK
    body = b"hello world " * 600 + b"\r\n"
    m = imaplib.IMAP4(HOST, p143)
    m.login(ALICE, PASSWORD)
    m.create("Acks")
    secs = []
    for i in range(15):
        t = time.perf_counter()
        typ, _ = m.append("Acks", None, None, msg(f"one {i}", body=body.decode()))
        secs.append(time.perf_counter() - t)
        check(typ == "OK", f"imaplib APPEND {i}")
    med = sorted(secs)[len(secs) // 2]
    check(med < limit, f"imaplib APPEND (literal and CRLF written apart): median {med * 1000:.1f} ms")
    m.logout()

    r = Raw(p143)
    r.login()
    # MULTIAPPEND with synchronizing literals: each message written, then the next one's
    # announcement in a write of its own; timed from the message to the next continuation.
    parts = [msg(f"multi {i}", body=body.decode()) for i in range(15)]
    r.send(b"m1 APPEND Acks {%d}\r\n" % len(parts[0]))
    check(r.line().startswith(b"+"), "continuation for the first message")
    secs = []
    for i, p in enumerate(parts):
        t = time.perf_counter()
        r.send(p)
        if i + 1 < len(parts):
            r.send(b" {%d}\r\n" % len(parts[i + 1]))
            check(r.line().startswith(b"+"), f"continuation for message {i + 2}")
            secs.append(time.perf_counter() - t)
    r.send(b"\r\n")
    _, tagged = r.read_until_tagged("m1")
    check(b" OK" in tagged, f"MULTIAPPEND of {len(parts)}: {tagged!r}")
    med = sorted(secs)[len(secs) // 2]
    check(med < limit, f"MULTIAPPEND message to next continuation: median {med * 1000:.1f} ms")

    # LITERAL+: nothing comes back until the end of the command. (This part took 0.3 ms per
    # message before the server acknowledged at once too: Linux's Nagle held no write here.)
    t = time.perf_counter()
    for i, p in enumerate(parts):
        r.send((b"m2 APPEND Acks" if i == 0 else b"") + b" {%d+}\r\n" % len(p))
        r.send(p)
    r.send(b"\r\n")
    _, tagged = r.read_until_tagged("m2")
    per = (time.perf_counter() - t) / len(parts)
    check(b" OK" in tagged, f"MULTIAPPEND of {len(parts)} LITERAL+ messages: {tagged!r}")
    check(per < limit, f"LITERAL+ MULTIAPPEND: {per * 1000:.1f} ms per message")
    untagged, _ = r.ok("STATUS Acks (MESSAGES)")
    check(b"MESSAGES 45" in b"".join(untagged), f"every message stored: {untagged!r}")
    r.ok("LOGOUT")



def recent_and_reselect(p143, p993):
    """\\Recent as RFC 3501 has it: the first read-write session to see a message gets it as
    recent, others (and later SELECTs) do not, EXAMINE shows the unclaimed ones. Then SELECTs
    of a mailbox the node has seen before, after flag changes, expunges, arrivals and a new
    keyword from another session: every answer as from a fresh read."""
    x = Raw(p143)
    x.login()
    x.ok("CREATE Rec")
    for i in range(3):
        x.ok("APPEND Rec", msg(f"r{i}"))
    c = Raw(p143)
    c.login()
    u, _ = c.ok("EXAMINE Rec")
    check(b"* 3 RECENT" in joined(u), f"EXAMINE shows unclaimed messages as recent {u}")
    a = Raw(p143)
    a.login()
    u, _ = a.ok("SELECT Rec")
    check(b"* 3 EXISTS" in joined(u) and b"* 3 RECENT" in joined(u), f"first SELECT {u}")
    check(b"[UNSEEN 1]" in joined(u), f"first unseen {u}")
    u, _ = a.ok("FETCH 1:* (FLAGS)")
    check(sum(b"\\Recent" in l for l in u) == 3, f"all three recent in A {u}")
    b = Raw(p143)
    b.login()
    u, _ = b.ok("SELECT Rec")
    check(b"* 3 EXISTS" in joined(u) and b"* 0 RECENT" in joined(u), f"second SELECT {u}")
    u, _ = b.ok("FETCH 1:* (FLAGS)")
    check(not any(b"\\Recent" in l for l in u), f"none recent in B {u}")
    u, _ = c.ok("EXAMINE Rec")
    check(b"* 0 RECENT" in joined(u), f"EXAMINE after a SELECT claimed them {u}")
    # Two arrive: A is told first and claims them.
    for i in range(3, 5):
        x.ok("APPEND Rec", msg(f"r{i}"))
    u, _ = a.ok("NOOP")
    check(b"* 5 EXISTS" in joined(u) and b"* 5 RECENT" in joined(u), f"A's NOOP {u}")
    u, _ = a.ok("FETCH 1:5 (FLAGS)")
    check(sum(b"\\Recent" in l for l in u) == 5, f"A has all five recent {u}")
    u, _ = b.ok("NOOP")
    check(b"* 5 EXISTS" in joined(u) and b"* 0 RECENT" in joined(u), f"B's NOOP {u}")
    u, _ = c.ok("NOOP")
    check(b"* 5 EXISTS" in joined(u) and b"* 0 RECENT" in joined(u), f"EXAMINE's NOOP {u}")
    u, _ = a.ok("SEARCH RECENT")
    check(joined(u).strip() == b"* SEARCH 1 2 3 4 5", f"SEARCH RECENT in A {u}")
    u, _ = b.ok("SEARCH RECENT")
    check(joined(u).strip() == b"* SEARCH", f"SEARCH RECENT in B {u}")
    # A changes things; B still answers from its own view, then learns.
    a.ok("STORE 1:2 +FLAGS (\\Seen)")
    a.ok("STORE 3 +FLAGS (\\Deleted)")
    a.ok("STORE 4 +FLAGS ($Label7)")
    a.ok("EXPUNGE")
    x.ok("APPEND Rec (\\Seen)", msg("r5"))
    u, _ = a.ok("NOOP")
    check(b"* 5 EXISTS" in joined(u) and b"* 5 RECENT" in joined(u), f"A after its expunge and an arrival {u}")
    u, _ = b.ok("FETCH 3:4 (FLAGS)")
    j = joined(u)
    check(b"* 3 FETCH" in j and b"EXPUNGE" not in j, f"B still has 3 during FETCH {u}")
    check(b"$Label7" in j and b"* 6 EXISTS" in j, f"B learns 4's keyword and the arrival {u}")
    for r, who in ((b, "B"), (c, "C")):
        u, _ = r.ok("SELECT Rec" if r is b else "EXAMINE Rec")
        j = joined(u)
        check(b"* 5 EXISTS" in j and b"[UNSEEN 3]" in j and b"$Label7" in j, f"{who} re-SELECT {u}")
        check(b"* 0 RECENT" in j, f"{who} re-SELECT: nothing left to claim {u}")
        u, _ = r.ok("FETCH 1:* (UID FLAGS)")
        got = [re.search(rb"UID (\d+) FLAGS \(([^)]*)\)", l).groups() for l in u]
        want = [(b"1", b"\\Seen"), (b"2", b"\\Seen"), (b"4", b"$Label7"), (b"5", b""), (b"6", b"\\Seen")]
        check(sorted(got) == want, f"{who}: flags after re-SELECT {got}")
    for r in (a, b, c, x):
        r.ok("LOGOUT")

if __name__ == "__main__":
    globals()[sys.argv[1]](*[int(p) for p in sys.argv[2:]])
    import os
    if os.environ.get("IMAP_DEBUG"):
        check(False, "debug")
