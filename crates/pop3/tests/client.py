"""POP3 scenarios run by tests/pop3.rs with Python's poplib: client.py SCENARIO PORT110 PORT995.
Each prints what it checks and exits non-zero on the first failure."""
import poplib
import ssl
import sys

HOST = "127.0.0.1"
PASSWORD = "correct horse"


def check(cond, what):
    if not cond:
        print("FAIL:", what)
        sys.exit(1)
    print("ok:", what)


def tls():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def expect_error(fn, code, what):
    try:
        fn()
    except poplib.error_proto as e:
        text = e.args[0].decode()
        check(code in text, f"{what}: {text}")
        return
    check(False, f"{what}: no error")


def session(p110, p995):
    """STLS, then USER/PASS; STAT/LIST/UIDL/RETR/TOP; DELE, RSET, DELE, QUIT."""
    p = poplib.POP3(HOST, p110, timeout=30)
    caps = p.capa()
    check("STLS" in caps and "USER" not in caps, f"before TLS: {sorted(caps)}")
    expect_error(lambda: p.user("alice@example.test"), "[AUTH]", "USER before TLS")
    p.stls(context=tls())
    caps = p.capa()
    for c in ["USER", "UIDL", "TOP", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "SASL"]:
        check(c in caps, f"CAPA has {c}")
    check("STLS" not in caps, "no STLS after TLS")
    p.user("alice@example.test")
    p.pass_(PASSWORD)
    count, octets = p.stat()
    check(count == 3, f"STAT {count} {octets}")
    _, listing, _ = p.list()
    sizes = [int(l.split()[1]) for l in listing]
    check(sum(sizes) == octets and len(sizes) == 3, f"LIST {listing}")
    _, uidls, _ = p.uidl()
    uids = [l.split()[1].decode() for l in uidls]
    check(len(set(uids)) == 3, f"UIDL {uids}")
    _, lines, n = p.retr(1)
    text = b"\r\n".join(lines)
    check(b"Subject: first" in text and b".dotted line" in text, "RETR 1 undone dot-stuffing")
    check(n >= sizes[0], f"RETR octets {n} vs {sizes[0]}")
    _, lines, _ = p.top(2, 0)
    check(lines[-1] == b"" and b"Subject: second" in b"\n".join(lines), f"TOP 2 0 {lines}")
    p.dele(1)
    expect_error(lambda: p.retr(1), "-ERR", "RETR of a deleted message")
    expect_error(lambda: p.dele(1), "-ERR", "DELE twice")
    check(p.stat()[0] == 2, "STAT after DELE")
    p.rset()
    check(p.stat()[0] == 3, "RSET undeletes")
    p.dele(3)
    resp = p.quit()
    check(b"1 messages deleted" in resp, f"QUIT {resp}")
    # What is left, over 995.
    p = poplib.POP3_SSL(HOST, p995, timeout=30, context=tls())
    p.user("alice@example.test")
    p.pass_(PASSWORD)
    check(p.stat()[0] == 2, "after QUIT, two left")
    _, uidls2, _ = p.uidl()
    check([l.split()[1].decode() for l in uidls2] == uids[:2], "UIDL stable")
    p.quit()


def locked(p110, p995):
    """A second session on the same maildrop gets [IN-USE]; one that ends without QUIT
    deletes nothing and frees the lock."""
    a = poplib.POP3_SSL(HOST, p995, timeout=30, context=tls())
    a.user("alice@example.test")
    a.pass_(PASSWORD)
    a.dele(1)
    b = poplib.POP3_SSL(HOST, p995, timeout=30, context=tls())
    b.user("alice@example.test")
    expect_error(lambda: b.pass_(PASSWORD), "[IN-USE]", "second session")
    import socket
    a.sock.shutdown(socket.SHUT_RDWR)  # gone without QUIT
    a.close()
    b.close()
    import time
    deadline = time.time() + 30
    while True:
        c = poplib.POP3_SSL(HOST, p995, timeout=30, context=tls())
        c.user("alice@example.test")
        try:
            c.pass_(PASSWORD)
            break
        except poplib.error_proto:
            c.close()
            check(time.time() < deadline, "lock freed after the session ended")
            time.sleep(0.1)
    check(c.stat()[0] == 3, "nothing deleted without QUIT")
    c.quit()


def auth(p110, p995):
    """SASL PLAIN with and without an initial response; wrong passwords get [AUTH], then the
    address is locked out ([LOGIN-DELAY]) even for the right one."""
    import base64
    p = poplib.POP3_SSL(HOST, p995, timeout=30, context=tls())
    cred = base64.b64encode(b"\0bob@example.test\0" + PASSWORD.encode()).decode()
    resp = p._shortcmd("AUTH PLAIN " + cred)
    check(resp.startswith(b"+OK"), f"AUTH PLAIN with initial response: {resp}")
    p.quit()
    p = poplib.POP3_SSL(HOST, p995, timeout=30, context=tls())
    p._putcmd("AUTH PLAIN")
    line = p._getline()[0]
    check(line.startswith(b"+"), f"continuation {line}")
    resp = p._shortcmd(cred)
    check(resp.startswith(b"+OK"), f"AUTH PLAIN after continuation: {resp}")
    p.quit()
    for i in range(3):
        p = poplib.POP3_SSL(HOST, p995, timeout=30, context=tls())
        p.user("bob@example.test")
        expect_error(lambda: p.pass_("wrong"), "[AUTH]", f"wrong password {i}")
        p.close()
    p = poplib.POP3_SSL(HOST, p995, timeout=30, context=tls())
    p.user("bob@example.test")
    expect_error(lambda: p.pass_(PASSWORD), "[LOGIN-DELAY]", "locked out")
    p.close()


def junk(p110, p995):
    """Over-long lines and unknown commands get one -ERR each; the session goes on."""
    p = poplib.POP3(HOST, p110, timeout=30)
    p._putcmd("NOOP " + "x" * 5000)
    check(p._getline()[0].startswith(b"-ERR"), "over-long line")
    expect_error(lambda: p._shortcmd("XYZZY"), "-ERR", "unknown command")
    expect_error(lambda: p._shortcmd("STAT"), "-ERR", "STAT before login")
    caps = p.capa()
    check("STLS" in caps, "still answering in step")
    p.quit()


if __name__ == "__main__":
    globals()[sys.argv[1]](int(sys.argv[2]), int(sys.argv[3]))
