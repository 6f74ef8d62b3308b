#!/usr/bin/env python3
"""SMTP state errors and the smtp.* settings, against a mailfleet SMTP server on 127.0.0.1.

Usage: states.py SCENARIO MX_PORT SUBMISSION_PORT SUBMISSIONS_PORT [ARGS...]
Exits 1 with a message on the first failed expectation. Uses client.py's helpers.
"""

import base64
import os
import smtplib
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from client import HOST, PASSWORD, Raw, check, fail, message, tls_context  # noqa: E402


def plain(user, password):
    return base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()


def b64(s):
    return base64.b64encode(s.encode()).decode()


def mail_before_helo(mx, sub, subs):
    """Nothing of a transaction before EHLO/HELO, on either port; HELO is enough."""
    r = Raw(mx)
    r.expect("MAIL FROM:<early@remote.test>", 503, "5.5.1")
    r.expect("RCPT TO:<alice@example.test>", 503, "5.5.1")
    r.expect("DATA", 503, "5.5.1")
    r.expect("HELO late.test", 250)
    r.expect("MAIL FROM:<early@remote.test>", 250)
    r.expect("RCPT TO:<alice@example.test>", 250)
    r.expect("DATA", 354)
    r.send(message("after helo") + ".\r\n")
    code, text = r.reply()
    check(code == 250, f"message after HELO: {code} {text}")
    r.expect("QUIT", 221)
    # On submission the missing greeting is the first thing said, before authentication.
    r = Raw(sub)
    r.expect("MAIL FROM:<alice@example.test>", 503, "5.5.1")
    r.expect("QUIT", 221)


def data_after_bdat(mx, sub, subs):
    """DATA in a transaction that has BDAT chunks is refused; the chunks so far stay and a
    BDAT LAST completes the message."""
    r = Raw(mx)
    r.expect("EHLO chunks.test", 250)
    r.expect("MAIL FROM:<c@remote.test>", 250)
    r.expect("RCPT TO:<alice@example.test>", 250)
    first = b"Subject: partial then last\r\n\r\nfirst part\r\n"
    r.send(f"BDAT {len(first)}\r\n".encode() + first)
    code, text = r.reply()
    check(code == 250, f"first chunk: {code} {text}")
    r.expect("DATA", 503, "5.5.1")
    last = b"second part\r\n"
    r.send(f"BDAT {len(last)} LAST\r\n".encode() + last)
    code, text = r.reply()
    check(code == 250, f"last chunk after the refused DATA: {code} {text}")
    r.expect("QUIT", 221)


def bdat_then_rset(mx, sub, subs):
    """RSET drops the chunks received: a later BDAT LAST has no transaction (its bytes are
    read and dropped, the session stays in step), and the next message holds none of them."""
    r = Raw(mx)
    r.expect("EHLO chunks.test", 250)
    r.expect("MAIL FROM:<c@remote.test>", 250)
    r.expect("RCPT TO:<alice@example.test>", 250)
    dropped = b"Subject: dropped\r\n\r\nthis chunk was reset\r\n"
    r.send(f"BDAT {len(dropped)}\r\n".encode() + dropped)
    check(r.reply()[0] == 250, "first chunk")
    r.expect("RSET", 250)
    orphan = b"orphan chunk\r\n"
    r.send(f"BDAT {len(orphan)} LAST\r\n".encode() + orphan)
    code, text = r.reply()
    check(code == 503 and "5.5.1" in text, f"BDAT LAST after RSET: {code} {text}")
    r.expect("NOOP", 250)
    r.expect("MAIL FROM:<c@remote.test>", 250)
    r.expect("RCPT TO:<alice@example.test>", 250)
    fresh = b"Subject: fresh\r\n\r\nonly this\r\n"
    r.send(f"BDAT {len(fresh)} LAST\r\n".encode() + fresh)
    code, text = r.reply()
    check(code == 250, f"message after RSET: {code} {text}")
    r.expect("QUIT", 221)


def second_starttls(mx, sub, subs):
    """STARTTLS on a TLS connection is refused and the session goes on over the first TLS."""
    s = smtplib.SMTP(HOST, sub, timeout=10)
    s.starttls(context=tls_context())
    s.ehlo("client.test")
    code, text = s.docmd("STARTTLS")
    check(code == 503 and b"5.5.1" in text, f"second STARTTLS: {code} {text}")
    s.login("alice@example.test", PASSWORD)
    s.sendmail("alice@example.test", ["bob@example.test"], message("after two starttls"))
    s.quit()
    # On implicit TLS (465) there is no first STARTTLS to repeat: refused as well.
    s = smtplib.SMTP_SSL(HOST, subs, timeout=10, context=tls_context())
    s.ehlo("client.test")
    check(not s.has_extn("starttls"), "STARTTLS offered over TLS")
    code, text = s.docmd("STARTTLS")
    check(code == 503, f"STARTTLS on 465: {code} {text}")
    code, _ = s.noop()
    check(code == 250, "session goes on")
    s.quit()


def auth_cancel(mx, sub, subs):
    """`*` in answer to a challenge cancels the exchange (501); the session is unharmed."""
    s = smtplib.SMTP(HOST, sub, timeout=10)
    s.starttls(context=tls_context())
    s.ehlo("client.test")
    code, _ = s.docmd("AUTH", "PLAIN")
    check(code == 334, f"AUTH PLAIN challenge: {code}")
    code, text = s.docmd("*")
    check(code == 501 and b"5.7.0" in text, f"cancelled PLAIN: {code} {text}")
    code, text = s.docmd("AUTH", "LOGIN")
    check(code == 334 and text == b"VXNlcm5hbWU6", f"LOGIN user challenge: {code} {text}")
    code, text = s.docmd(b64("alice@example.test"))
    check(code == 334 and text == b"UGFzc3dvcmQ6", f"LOGIN password challenge: {code} {text}")
    code, text = s.docmd("*")
    check(code == 501 and b"5.7.0" in text, f"cancelled LOGIN: {code} {text}")
    # Not authenticated by any of that.
    code, _ = s.mail("alice@example.test")
    check(code == 530, f"MAIL after cancelled AUTH: {code}")
    code, text = s.docmd("AUTH", "PLAIN " + plain("alice@example.test", PASSWORD))
    check(code == 235, f"AUTH after the cancels: {code} {text}")
    code, _ = s.docmd("AUTH", "PLAIN " + plain("alice@example.test", PASSWORD))
    check(code == 503, f"second AUTH: {code}")
    s.sendmail("alice@example.test", ["bob@example.test"], message("after cancel"))
    s.quit()


def cleartext_auth(mx, sub, subs, allowed):
    """smtp.auth.allow_cleartext: AUTH offered and usable without TLS only when true."""
    s = smtplib.SMTP(HOST, sub, timeout=10)
    s.ehlo("client.test")
    creds = "PLAIN " + plain("alice@example.test", PASSWORD)
    if allowed == "true":
        check(s.has_extn("auth"), "AUTH not offered without TLS although allowed")
        code, text = s.docmd("AUTH", creds)
        check(code == 235, f"cleartext AUTH: {code} {text}")
        s.sendmail("alice@example.test", ["bob@example.test"], message("cleartext login"))
    else:
        check(not s.has_extn("auth"), "AUTH offered without TLS")
        code, text = s.docmd("AUTH", creds)
        check(code == 538 and b"5.7.11" in text, f"cleartext AUTH refused: {code} {text}")
        code, _ = s.mail("alice@example.test")
        check(code == 530, f"MAIL without AUTH: {code}")
    s.quit()


def send_as_user(mx, sub, subs, sender, want):
    """alice logs in on 465 and uses `sender` (empty: <>); MAIL must get `want`, and a 250
    must end in an accepted message to bob."""
    s = smtplib.SMTP_SSL(HOST, subs, timeout=10, context=tls_context())
    s.login("alice@example.test", PASSWORD)
    code, text = s.mail(sender)
    check(code == int(want), f"MAIL FROM:<{sender}> as alice: {code} {text}, wanted {want}")
    if code == 250:
        code, _ = s.rcpt("bob@example.test")
        check(code == 250, "rcpt")
        code, text = s.data(message(f"sent as {sender or 'null'}"))
        check(code == 250, f"data: {code} {text}")
    s.quit()


def login_code(mx, sub, subs, password):
    """One AUTH PLAIN as alice on 587 after STARTTLS; prints `CODE n` for the reply."""
    s = smtplib.SMTP(HOST, sub, timeout=10)
    s.starttls(context=tls_context())
    s.ehlo("client.test")
    code, _ = s.docmd("AUTH", "PLAIN " + plain("alice@example.test", password))
    s.close()
    print(f"CODE {code}")


def send_expect(mx, sub, subs, subject, want):
    """One message to alice on the MX; the reply at the end of its data must be `want`."""
    r = Raw(mx)
    r.expect("EHLO blobs.test", 250)
    r.expect("MAIL FROM:<b@remote.test>", 250)
    r.expect("RCPT TO:<alice@example.test>", 250)
    r.expect("DATA", 354)
    r.send(message(subject) + ".\r\n")
    code, text = r.reply()
    check(code == int(want), f"end of data: {code} {text!r}, wanted {want}")
    r.expect("QUIT", 221)


SCENARIOS = {f.__name__: f for f in [
    mail_before_helo, data_after_bdat, bdat_then_rset, second_starttls, auth_cancel,
    cleartext_auth, send_as_user, login_code, send_expect]}

if __name__ == "__main__":
    name, mx, sub, subs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    if name not in SCENARIOS:
        fail(f"no scenario {name}")
    SCENARIOS[name](mx, sub, subs, *sys.argv[5:])
    print("ok", name)
