#!/usr/bin/env python3
"""Real-client scenarios against a mailfleet SMTP server on 127.0.0.1.

Usage: client.py SCENARIO MX_PORT SUBMISSION_PORT SUBMISSIONS_PORT [ARGS...]
Exits 1 with a message on the first failed expectation.
"""

import base64
import smtplib
import socket
import ssl
import struct
import sys
import time

HOST = "127.0.0.1"
PASSWORD = "correct horse"


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


class Raw:
    """A line-level SMTP client over a plain socket, for what smtplib will not send."""

    def __init__(self, port, greet=True, preamble=b""):
        self.s = socket.create_connection((HOST, port), timeout=10)
        self.buf = b""
        if preamble:
            self.s.sendall(preamble)
        if greet:
            code, _ = self.reply()
            check(code == 220, f"greeting {code}")

    def send(self, data):
        self.s.sendall(data if isinstance(data, bytes) else data.encode())

    def reply(self):
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.s.recv(65536)
                if not chunk:
                    return (0, "\n".join(lines) + " <closed>")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            line = line.decode("utf-8", "replace")
            lines.append(line)
            if len(line) < 4 or line[3] == " ":
                return (int(line[:3]), "\n".join(lines))

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def expect(self, line, code, status=None):
        got, text = self.cmd(line)
        check(got == code, f"{line!r}: expected {code}, got {got} {text!r}")
        if status:
            check(status in text, f"{line!r}: expected {status} in {text!r}")
        return text

    def closed(self):
        try:
            self.s.settimeout(5)
            return self.s.recv(1) == b""
        except OSError:
            return True


def message(subject, body="hello\r\n", mid=None, sender="alice@example.test"):
    mid = mid or f"<{subject.replace(' ', '-')}@client.test>"
    return (f"From: {sender}\r\nTo: bob@example.test\r\nSubject: {subject}\r\n"
            f"Message-ID: {mid}\r\n\r\n{body}")


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def basic(mx, sub, subs):
    s = smtplib.SMTP(HOST, mx, timeout=10)
    code, _ = s.ehlo("client.test")
    check(code == 250, "ehlo")
    for ext in ["pipelining", "size", "8bitmime", "enhancedstatuscodes", "starttls", "smtputf8",
                "chunking", "dsn"]:
        check(s.has_extn(ext), f"EHLO lacks {ext}")
    check(not s.has_extn("auth"), "AUTH offered without TLS")
    check(s.esmtp_features["size"] == "26214400", "SIZE value")
    s.sendmail("sender@remote.test", ["alice@example.test"], message("basic one"))
    code, text = s.mail("sender@remote.test")
    check(code == 250, "mail")
    code, text = s.rcpt("nobody@example.test")
    check(code == 550 and b"5.1.1" in text, f"unknown user: {code} {text}")
    code, text = s.rcpt("victim@remote.test")
    check(code == 554 and b"5.7.1" in text, f"relay: {code} {text}")
    code, text = s.rcpt("bob@example.test")
    check(code == 250 and b"2.1.5" in text, f"rcpt bob: {code}")
    code, text = s.data(message("basic two"))
    check(code == 250 and b"2.0.0" in text, f"data: {code}")
    code, _ = s.docmd("VRFY", "alice")
    check(code == 252, "vrfy")
    code, _ = s.docmd("FOO")
    check(code == 500, "unknown command")
    code, _ = s.docmd("MAIL", "FROM:<broken")
    check(code == 501, "bad syntax")
    code, _ = s.docmd("RCPT", "TO:<alice@example.test>")
    check(code == 503, "rcpt without mail")
    code, _ = s.docmd("DATA")
    check(code == 503, "data without mail")
    s.mail("x@remote.test")
    code, _ = s.docmd("MAIL", "FROM:<y@remote.test>")
    check(code == 503, "nested mail")
    code, _ = s.docmd("DATA")
    check(code == 554, "data without recipients")
    code, _ = s.docmd("MAIL", "FROM:<a@remote.test> FOO=BAR")
    check(code == 555 or code == 503, "unknown parameter")
    s.rset()
    code, _ = s.docmd("MAIL", "FROM:<a@remote.test> FOO=BAR")
    check(code == 555, "unknown parameter after RSET")
    code, _ = s.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABjb3JyZWN0IGhvcnNl")
    check(code == 538, f"AUTH before TLS: {code}")
    s.quit()
    # HELO clients get plain SMTP.
    s = smtplib.SMTP(HOST, mx, timeout=10)
    code, _ = s.helo("old.client.test")
    check(code == 250, "helo")
    s.sendmail("", ["postmaster"], message("to postmaster"))
    s.quit()


RELAY_TRICKS = [
    "<victim@remote.test>",
    "<VICTIM@REMOTE.TEST>",
    "<victim%remote.test@example.test>",
    "<victim%remote.test@[127.0.0.1]>",
    "<victim@remote.test@example.test>",
    "<\"victim@remote.test\"@example.test>",
    "<\"victim%remote.test\"@example.test>",
    "<\"victim@remote.test\">",
    "<@example.test:victim@remote.test>",
    "<@example.test,@mx.example.test:victim@remote.test>",
    "<victim@remote.test.>",
    "<victim@example.test.>",
    "<victim!remote.test@example.test>",
    "<remote.test!victim@example.test>",
    "<victim@[127.0.0.1]>",
    "<victim@[IPv6:::1]>",
    "<victim@localhost>",
    "<victim@example.test.remote.test>",
    "victim@remote.test",
    "<victim@remote.test> NOTIFY=NEVER",
    "<\"victim\"@remote.test>",
    "<victim@remote.test:25>",
    "<victim@remote.test%example.test>",
]


def relay(mx, sub, subs):
    r = Raw(mx)
    r.expect("EHLO attacker.test", 250)
    for sender in ["<spoof@remote.test>", "<alice@example.test>", "<>"]:
        r.expect(f"MAIL FROM:{sender}", 250)
        for trick in RELAY_TRICKS:
            code, text = r.cmd(f"RCPT TO:{trick}")
            check(code >= 500, f"relay trick {trick} from {sender} got {code} {text!r}")
        r.expect("RSET", 250)
    r.expect("QUIT", 221)
    print(f"{len(RELAY_TRICKS)} relay tricks refused")
    # Submission without login relays nothing either, TLS or not.
    r = Raw(sub)
    r.expect("EHLO attacker.test", 250)
    r.expect("MAIL FROM:<alice@example.test>", 530, "5.7.0")
    r.expect("QUIT", 221)


def relay_networks(mx, sub, subs, expect):
    """From 127.0.0.1 without AUTH, a remote recipient is refused unless the address is in
    smtp.relay_networks; submission still wants AUTH first."""
    r = Raw(mx)
    r.expect("EHLO app.test", 250)
    r.expect("MAIL FROM:<app@example.test>", 250)
    if expect == "open":
        r.expect("RCPT TO:<customer@remote.test>", 250)
        r.expect("DATA", 354)
        r.send(message("from the app server") + ".\r\n")
        code, text = r.reply()
        check(code == 250, f"relayed message {code} {text}")
    else:
        r.expect("RCPT TO:<customer@remote.test>", 554, "5.7.1")
    r.expect("QUIT", 221)
    r = Raw(sub)
    r.expect("EHLO app.test", 250)
    r.expect("MAIL FROM:<app@example.test>", 530, "5.7.0")
    r.expect("QUIT", 221)


def pipelining(mx, sub, subs):
    r = Raw(mx)
    r.expect("EHLO pipe.test", 250)
    r.send("MAIL FROM:<p@remote.test>\r\nRCPT TO:<alice@example.test>\r\n"
           "RCPT TO:<nobody@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
    codes = [r.reply()[0] for _ in range(5)]
    check(codes == [250, 250, 550, 250, 354], f"pipelined replies {codes}")
    r.send(message("pipelined") + ".\r\n" + "MAIL FROM:<q@remote.test>\r\n"
           "RCPT TO:<bob@example.test>\r\nDATA\r\n")
    codes = [r.reply()[0] for _ in range(4)]
    check(codes == [250, 250, 250, 354], f"second batch {codes}")
    r.send(message("pipelined two") + ".\r\nQUIT\r\n")
    check(r.reply()[0] == 250, "second message")
    check(r.reply()[0] == 221, "quit")


def bdat(mx, sub, subs):
    r = Raw(mx)
    r.expect("EHLO chunk.test", 250)
    msg = message("chunked", "line one\r\nline two\r\n").encode()
    a, b = msg[:30], msg[30:]
    r.send(f"MAIL FROM:<c@remote.test>\r\nRCPT TO:<alice@example.test>\r\nBDAT {len(a)}\r\n".encode()
           + a + f"BDAT {len(b)} LAST\r\n".encode() + b)
    codes = [r.reply()[0] for _ in range(4)]
    check(codes == [250, 250, 250, 250], f"bdat replies {codes}")
    # An empty last chunk ends a message too.
    r.send(f"MAIL FROM:<c@remote.test>\r\nRCPT TO:<alice@example.test>\r\nBDAT {len(msg)}\r\n".encode()
           + msg + b"BDAT 0 LAST\r\n")
    codes = [r.reply()[0] for _ in range(4)]
    check(codes == [250, 250, 250, 250], f"bdat 0 last {codes}")
    # BDAT without a transaction: the chunk is read and refused.
    r.send(b"BDAT 5\r\nhelloNOOP\r\n")
    check(r.reply()[0] == 503, "bdat without mail")
    check(r.reply()[0] == 250, "noop after skipped chunk")
    # Bare LF inside BDAT is refused as well.
    bad = b"Subject: x\r\n\r\nbare\nlf\r\n"
    r.send(b"MAIL FROM:<c@remote.test>\r\nRCPT TO:<alice@example.test>\r\n"
           + f"BDAT {len(bad)} LAST\r\n".encode() + bad)
    codes = [r.reply()[0] for _ in range(3)]
    check(codes == [250, 250, 550], f"bdat bare lf {codes}")
    r.expect("QUIT", 221)


def split_writes(mx, sub, subs):
    """A client with Nagle's algorithm on (Python's sockets) that writes a message's body and
    its ending ".\r\n" apart, or a BDAT command and its chunk apart: the second write waits
    until the first is acknowledged, and no reply is due to carry the ACK. The server must
    acknowledge at once, not after the kernel's delayed ACK (at least 40 ms on Linux). Medians
    of 9 messages each, so one stall on a busy machine does not decide."""
    limit = 0.02
    body = message("split", "hello world " * 600 + "\r\n").encode()
    r = Raw(mx)
    r.expect("EHLO split.test", 250)
    secs = []
    for _ in range(9):
        r.expect("MAIL FROM:<c@remote.test>", 250)
        r.expect("RCPT TO:<alice@example.test>", 250)
        r.expect("DATA", 354)
        t = time.perf_counter()
        r.send(body)
        r.send(b".\r\n")
        code, text = r.reply()
        secs.append(time.perf_counter() - t)
        check(code == 250, f"DATA written apart: {code} {text}")
    med = sorted(secs)[len(secs) // 2]
    check(med < limit, f"DATA body and dot written apart: median {med * 1000:.1f} ms")
    secs = []
    for _ in range(9):
        r.expect("MAIL FROM:<c@remote.test>", 250)
        r.expect("RCPT TO:<alice@example.test>", 250)
        t = time.perf_counter()
        r.send(f"BDAT {len(body)} LAST\r\n")
        r.send(body)
        code, text = r.reply()
        secs.append(time.perf_counter() - t)
        check(code == 250, f"BDAT written apart: {code} {text}")
    med = sorted(secs)[len(secs) // 2]
    check(med < limit, f"BDAT command and chunk written apart: median {med * 1000:.1f} ms")
    r.expect("QUIT", 221)


def utf8(mx, sub, subs):
    r = Raw(mx)
    r.expect("EHLO utf8.test", 250)
    r.expect("MAIL FROM:<jörg@bücher.test>", 553, "5.6.7")
    r.expect("MAIL FROM:<jörg@bücher.test> SMTPUTF8 BODY=8BITMIME", 250)
    r.expect("RCPT TO:<zoë@example.test>", 250)
    r.expect("DATA", 354)
    body = "Subject: grüße\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nÄpfel und Bären\r\n"
    r.send(body.encode("utf-8") + b".\r\n")
    check(r.reply()[0] == 250, "utf8 data")
    r.expect("MAIL FROM:<ascii@remote.test> BODY=8BITMIME", 250)
    r.expect("RCPT TO:<zoë@example.test>", 553, "5.6.7")
    r.expect("RCPT TO:<alice@example.test>", 250)
    r.expect("DATA", 354)
    r.send(b"Subject: latin1\r\n\r\n\xe9t\xe9 \xff\r\n.\r\n")
    check(r.reply()[0] == 250, "8bit data")
    r.expect("QUIT", 221)


def starttls_auth(mx, sub, subs):
    s = smtplib.SMTP(HOST, sub, timeout=10)
    s.ehlo("client.test")
    check(s.has_extn("starttls"), "no STARTTLS on 587")
    check(not s.has_extn("auth"), "AUTH before TLS")
    code, text = s.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0alice@example.test\0" + PASSWORD.encode()).decode())
    check(code == 538, f"AUTH before TLS: {code} {text}")
    code, _ = s.mail("alice@example.test")
    check(code == 530, "MAIL before AUTH")
    s.rset()
    s.starttls(context=tls_context())
    s.ehlo("client.test")
    check(s.has_extn("auth") and "PLAIN" in s.esmtp_features["auth"], "AUTH after TLS")
    check(not s.has_extn("starttls"), "STARTTLS offered twice")
    try:
        s.login("alice@example.test", "wrong")
        fail("wrong password accepted")
    except smtplib.SMTPAuthenticationError as e:
        check(e.smtp_code == 535, f"wrong password code {e.smtp_code}")
    s.login("alice@example.test", PASSWORD)
    code, text = s.mail("bob@example.test")
    check(code == 553 and b"5.7.1" in text, f"sending as someone else: {code} {text}")
    s.rset()
    code, text = s.mail("")
    check(code == 553, f"null sender for a user: {code}")
    s.rset()
    s.sendmail("alice@example.test", ["friend@remote.test", "bob@example.test"], message("submitted"))
    s.sendmail("sales@example.test", ["other@remote.test"], message("as alias"))
    s.quit()


def implicit_tls(mx, sub, subs):
    s = smtplib.SMTP_SSL(HOST, subs, timeout=10, context=tls_context())
    s.ehlo("client.test")
    check(s.has_extn("auth"), "AUTH on 465")
    s.user, s.password = "bob@example.test", PASSWORD
    code, text = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
    check(code == 235, f"AUTH LOGIN {code} {text}")
    s.sendmail("bob@example.test", ["alice@example.test"],
               message("over 465", sender="bob@example.test"))
    s.quit()
    # STARTTLS on port 25 too, then MX delivery without AUTH.
    s = smtplib.SMTP(HOST, mx, timeout=10)
    s.starttls(context=tls_context())
    s.ehlo("client.test")
    s.sendmail("x@remote.test", ["alice@example.test"], message("mx over tls"))
    s.quit()


def missing_headers(mx, sub, subs):
    """A submitted message without Date and Message-ID gets both; one with them keeps its own.
    Mail through the MX is left as it came."""
    bare = "From: bob@example.test\r\nTo: alice@example.test\r\nSubject: bare\r\n\r\nhi\r\n"
    s = smtplib.SMTP_SSL(HOST, subs, timeout=10, context=tls_context())
    s.login("bob@example.test", PASSWORD)
    s.sendmail("bob@example.test", ["alice@example.test"], bare)
    s.sendmail("bob@example.test", ["alice@example.test"],
               "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
               + message("complete", sender="bob@example.test"))
    s.quit()
    s = smtplib.SMTP(HOST, mx, timeout=10)
    s.sendmail("x@remote.test", ["alice@example.test"], bare.replace("bare", "bare via mx"))
    s.quit()


def oversize(mx, sub, subs):
    r = Raw(mx)
    r.expect("EHLO big.test", 250)
    r.expect("MAIL FROM:<big@remote.test> SIZE=50000", 552, "5.3.4")
    r.expect("MAIL FROM:<big@remote.test>", 250)
    r.expect("RCPT TO:<alice@example.test>", 250)
    r.expect("DATA", 354)
    r.send(("x" * 70 + "\r\n") * 200 + ".\r\n")
    code, text = r.reply()
    check(code == 552 and "5.3.4" in text, f"oversize at end of data {code} {text}")
    r.expect("MAIL FROM:<big@remote.test>", 250)
    r.expect("RCPT TO:<alice@example.test>", 250)
    chunk = b"y" * 6000
    r.send(f"BDAT {len(chunk)} LAST\r\n".encode() + chunk)
    code, text = r.reply()
    check(code == 552, f"oversize bdat {code} {text}")
    r.expect("NOOP", 250)
    r.expect("QUIT", 221)


def long_lines(mx, sub, subs):
    r = Raw(mx)
    r.expect("EHLO long.test", 250)
    code, text = r.cmd("NOOP " + "a" * 10000)
    check(code == 500 and "5.5.6" in text, f"long command {code} {text}")
    r.expect("NOOP", 250)
    r.expect("MAIL FROM:<long@remote.test>", 250)
    r.expect("RCPT TO:<alice@example.test>", 250)
    r.expect("DATA", 354)
    r.send("Subject: long line\r\n\r\n" + "z" * 20000 + "\r\n.\r\n")
    check(r.reply()[0] == 250, "long body line")
    r.expect("QUIT", 221)


def smuggling(mx, sub, subs):
    r = Raw(mx)
    r.expect("EHLO smuggler.test", 250)
    r.expect("MAIL FROM:<s@remote.test>", 250)
    r.expect("RCPT TO:<alice@example.test>", 250)
    r.expect("DATA", 354)
    smuggled = ("Subject: outer\r\n\r\nouter\n.\nMAIL FROM:<admin@example.test>\r\n"
                "RCPT TO:<bob@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\ninner\r\n.\r\n")
    r.send(smuggled)
    code, text = r.reply()
    check(code == 550 and "5.6.0" in text, f"bare LF message {code} {text}")
    r.expect("NOOP", 250)
    for variant in ["\r.\r", "\n.\r\n", "\r\n.\n"]:
        r.expect("MAIL FROM:<s@remote.test>", 250)
        r.expect("RCPT TO:<alice@example.test>", 250)
        r.expect("DATA", 354)
        r.send("Subject: v\r\n\r\nx" + variant + "MAIL FROM:<a@b.test>\r\n.\r\n")
        code, text = r.reply()
        check(code == 550, f"variant {variant!r}: {code} {text}")
    r.expect("QUIT", 221)


def refused(mx, sub, subs, port_name, code="554"):
    port = {"mx": mx, "sub": sub}[port_name]
    r = Raw(port, greet=False)
    got, text = r.reply()
    check(got == int(code), f"expected {code} at connect on {port_name}, got {got} {text!r}")


def welcome(mx, sub, subs, port_name):
    port = {"mx": mx, "sub": sub}[port_name]
    r = Raw(port)
    r.expect("QUIT", 221)


def proxy_v2(src_ip, dst_port):
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    addr = socket.inet_aton(src_ip) + socket.inet_aton("127.0.0.1") + struct.pack("!HH", 40000, dst_port)
    return sig + bytes([0x21, 0x11]) + struct.pack("!H", len(addr)) + addr


def proxy(mx, sub, subs, src, expect):
    r = Raw(mx, greet=False, preamble=proxy_v2(src, mx))
    code, text = r.reply()
    check(code == int(expect), f"PROXY from {src}: expected {expect}, got {code} {text!r}")
    if code == 220:
        r.expect("EHLO proxied.test", 250)
        check(src in r.cmd("HELO again.test")[1], "HELO reply names the proxied address")


def proxy_untrusted(mx, sub, subs):
    # From an untrusted peer the header is not a header: the greeting comes (access rules saw
    # 127.0.0.1, not the denied source), and the signature's bytes are read as commands — the
    # v2 signature ends in "QUIT\n" exactly so that such a server says goodbye.
    r = Raw(mx, greet=True, preamble=proxy_v2("192.0.2.9", mx))
    codes = []
    while True:
        code, _ = r.reply()
        if code == 0:
            break
        codes.append(code)
        if code == 221:
            break
    check(codes and codes[-1] == 221 and all(c >= 500 for c in codes[:-1]),
          f"untrusted PROXY bytes read as commands: {codes}")


def greeted(port, seconds=30):
    """A connection the server greets with 220. A 421 means it still counts connections that
    were closed (it frees a slot once it has seen the close): try again, however long a busy
    machine takes, up to `seconds`."""
    import time
    deadline = time.monotonic() + seconds
    while True:
        r = Raw(port, greet=False)
        code, text = r.reply()
        if code == 220:
            return r
        check(code == 421, f"greeting {code} {text!r}")
        check(time.monotonic() < deadline, f"no free connection slot within {seconds} s")
        time.sleep(0.05)


def connections(mx, sub, subs, limit):
    limit = int(limit)
    # An earlier scenario's connections may not have been released yet: wait for each slot.
    held = [greeted(mx) for _ in range(limit)]
    r = Raw(mx, greet=False)
    code, text = r.reply()
    check(code == 421, f"connection over the limit got {code} {text!r}")
    held[0].expect("QUIT", 221)
    held[0].closed()
    greeted(mx).expect("QUIT", 221)


def reconnect_loop(mx, sub, subs, limit, sessions):
    """`limit` clients from one address, each running `sessions` sessions back to back with
    smtplib (QUIT, read 221, close, connect again at once), as smtp-source -s does: never more
    than `limit` connections at a time, so never a 421."""
    import threading
    limit, sessions = int(limit), int(sessions)
    failures = []

    def one_client(n):
        for i in range(sessions):
            try:
                c = smtplib.SMTP(HOST, mx, timeout=20)
                c.ehlo(f"loop{n}.test")
                code, _ = c.mail(f"<loop{n}@remote.test>")
                check(code == 250, f"MAIL {code}")
                c.rset()
                c.quit()
            except smtplib.SMTPConnectError as e:
                failures.append(f"client {n} session {i}: {e.smtp_code} {e.smtp_error!r}")
                return
            except Exception as e:
                failures.append(f"client {n} session {i}: {e!r}")
                return

    threads = [threading.Thread(target=one_client, args=(n,)) for n in range(limit)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    check(not any(t.is_alive() for t in threads), "a client loop did not finish within 60 s")
    check(not failures, f"{len(failures)} clients refused, first: {failures[:3]}")


def over_limit(mx, sub, subs, limit, expected):
    """`limit` connections held, then one more: its greeting is `expected` (421, or 220 for an
    address excepted from the limit)."""
    limit, expected = int(limit), int(expected)
    held = [greeted(mx) for _ in range(limit)]
    r = Raw(mx, greet=False)
    code, text = r.reply()
    check(code == expected, f"connection {limit + 1} got {code} {text!r}, expected {expected}")
    for h in held:
        h.expect("QUIT", 221)
    if code == 220:
        r.expect("QUIT", 221)


def recipients(mx, sub, subs):
    r = Raw(mx)
    r.expect("EHLO many.test", 250)
    r.expect("MAIL FROM:<m@remote.test>", 250)
    r.expect("RCPT TO:<alice@example.test>", 250)
    r.expect("RCPT TO:<bob@example.test>", 250)
    r.expect("RCPT TO:<alice@example.test>", 452, "4.5.3")
    r.expect("QUIT", 221)


def rate(mx, sub, subs):
    r = Raw(mx)
    r.expect("EHLO rate.test", 250)
    # Transactions that end without a message do not count.
    for _ in range(3):
        r.expect("MAIL FROM:<busy@remote.test>", 250)
        r.expect("RSET", 250)
    # Two accepted messages fill the limit of two per minute.
    for n in range(2):
        r.expect("MAIL FROM:<busy@remote.test>", 250)
        r.expect("RCPT TO:<alice@example.test>", 250)
        r.expect("DATA", 354)
        r.send(f"Subject: rate {n}\r\n\r\nhello\r\n.\r\n")
        code, text = r.reply()
        check(code == 250, f"message {n} within the rate {code} {text}")
    r.expect("MAIL FROM:<busy@remote.test>", 450, "4.7.1")
    r.expect("MAIL FROM:<calm@remote.test>", 250)
    r.expect("QUIT", 221)


def lockout(mx, sub, subs):
    def attempt(password):
        s = smtplib.SMTP(HOST, sub, timeout=10)
        s.starttls(context=tls_context())
        s.ehlo("client.test")
        creds = base64.b64encode(b"\0alice@example.test\0" + password.encode()).decode()
        code, _ = s.docmd("AUTH", "PLAIN " + creds)
        s.close()
        return code
    codes = [attempt("bad") for _ in range(3)]
    check(codes == [535, 535, 535], f"failures {codes}")
    check(attempt(PASSWORD) == 454, "locked out address must be refused even with the right password")


def login(mx, sub, subs, password, want):
    """One AUTH PLAIN as alice on submission; its reply code must be `want`."""
    s = smtplib.SMTP(HOST, sub, timeout=10)
    s.starttls(context=tls_context())
    s.ehlo("client.test")
    creds = base64.b64encode(b"\0alice@example.test\0" + password.encode()).decode()
    code, text = s.docmd("AUTH", "PLAIN " + creds)
    s.close()
    check(code == int(want), f"AUTH got {code} {text!r}, wanted {want}")


def send_as(mx, sub, subs, sender, want):
    """MAIL FROM `sender` on the MX must get `want`; when 250, the message must be accepted."""
    r = Raw(mx)
    r.expect("EHLO rate.test", 250)
    r.expect(f"MAIL FROM:<{sender}>", int(want))
    if int(want) == 250:
        r.expect("RCPT TO:<alice@example.test>", 250)
        r.expect("DATA", 354)
        r.send("Subject: rate\r\n\r\nhello\r\n.\r\n")
        code, text = r.reply()
        check(code == 250, f"message not accepted: {code} {text}")
    r.expect("QUIT", 221)


def quota(mx, sub, subs):
    r = Raw(mx)
    r.expect("EHLO quota.test", 250)
    r.expect("MAIL FROM:<q@remote.test> SIZE=5000", 250)
    r.expect("RCPT TO:<carol@example.test>", 452, "4.2.2")
    r.expect("RSET", 250)
    r.expect("MAIL FROM:<q@remote.test>", 250)
    r.expect("RCPT TO:<carol@example.test>", 250)
    r.expect("DATA", 354)
    r.send("Subject: big\r\n\r\n" + "q" * 3000 + "\r\n.\r\n")
    code, text = r.reply()
    check(code == 552 and "5.2.2" in text, f"over quota at end of data {code} {text}")
    # One full mailbox among others: the others get the message, the full one goes to the queue.
    r.expect("MAIL FROM:<q@remote.test>", 250)
    r.expect("RCPT TO:<carol@example.test> NOTIFY=FAILURE", 250)
    r.expect("RCPT TO:<alice@example.test>", 250)
    r.expect("DATA", 354)
    r.send("Subject: mixed\r\n\r\n" + "q" * 3000 + "\r\n.\r\n")
    code, text = r.reply()
    check(code == 250, f"one full mailbox of two {code} {text}")
    r.expect("QUIT", 221)


def aliases(mx, sub, subs):
    s = smtplib.SMTP(HOST, mx, timeout=10)
    s.sendmail("a@remote.test", ["sales@example.test"], message("to sales"))
    s.sendmail("a@remote.test", ["whoever@example.test"], message("to catch-all"))
    code, _ = s.mail("a@remote.test")
    code, text = s.rcpt("loop1@example.test")
    check(code == 550, f"alias loop resolves to nobody: {code} {text}")
    s.quit()


def dsn(mx, sub, subs):
    s = smtplib.SMTP(HOST, sub, timeout=10)
    s.starttls(context=tls_context())
    s.login("alice@example.test", PASSWORD)
    s.sendmail("alice@example.test", ["friend@remote.test"], message("with dsn"),
               mail_options=["RET=HDRS", "ENVID=env+2B1"],
               rcpt_options=["NOTIFY=FAILURE,DELAY", "ORCPT=rfc822;friend+40remote.test"])
    s.quit()


def too_many_errors(mx, sub, subs):
    r = Raw(mx)
    codes = [r.cmd("BOGUS")[0] for _ in range(5)]
    check(codes == [500] * 5, f"errors {codes}")
    code, text = r.reply()
    check(code == 421 and "4.7.0" in text, f"after the limit: {code} {text!r}")
    check(r.closed(), "connection closed after 421")


def send_one(mx, sub, subs, subject):
    s = smtplib.SMTP(HOST, mx, timeout=10)
    s.sendmail("a@remote.test", ["alice@example.test"], message(subject))
    s.quit()


SCENARIOS = {f.__name__: f for f in [
    basic, relay, relay_networks, pipelining, bdat, split_writes, utf8, starttls_auth, implicit_tls, oversize, long_lines,
    smuggling, missing_headers, refused, welcome, proxy, proxy_untrusted, connections, reconnect_loop, over_limit, recipients, rate, lockout,
    quota, aliases, dsn, too_many_errors, send_one, login, send_as]}

if __name__ == "__main__":
    name, mx, sub, subs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    SCENARIOS[name](mx, sub, subs, *sys.argv[5:])
    print("ok", name)
