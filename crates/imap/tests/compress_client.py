"""COMPRESS=DEFLATE (RFC 4978) over a raw socket, run by tests/compress.rs:
compress_client.py PORT143 PORT993. imaplib has no COMPRESS, so this is a small line client
whose bytes go through zlib's raw DEFLATE (wbits=-15) once compression is on. Prints what it
checks and the bytes on the wire; exits non-zero on the first failure."""
import base64
import random
import socket
import ssl
import sys
import zlib

HOST = "127.0.0.1"
USER = "alice@example.test"
PASSWORD = "correct horse"


def check(cond, what):
    if not cond:
        print("FAIL:", what)
        sys.exit(1)
    print("ok:", what)


class Client:
    def __init__(self, port, tls=False):
        s = socket.create_connection((HOST, port), timeout=20)
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s)
        self.sock = s
        self.buf = b""  # uncompressed input not yet used
        self.deflate = None
        self.inflate = None
        self.wire_in = 0
        self.wire_out = 0
        self.n = 0
        self.greeting = self.line()

    def send(self, data):
        if self.deflate:
            data = self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self.wire_out += len(data)
        self.sock.sendall(data)

    def more(self):
        d = self.sock.recv(1 << 16)
        if not d:
            raise EOFError("connection closed")
        self.wire_in += len(d)
        if self.inflate:
            d = self.inflate.decompress(d)
        self.buf += d

    def line(self):
        while b"\r\n" not in self.buf:
            self.more()
        i = self.buf.index(b"\r\n") + 2
        line, self.buf = self.buf[:i], self.buf[i:]
        return line

    def exact(self, n):
        while len(self.buf) < n:
            self.more()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def tag(self):
        self.n += 1
        return f"c{self.n}".encode()

    def response(self, tag):
        """(untagged lines with literals inlined, tagged line)."""
        untagged = []
        while True:
            line = self.line()
            while line.endswith(b"}\r\n") and b"{" in line:
                size = int(line[line.rindex(b"{") + 1:-3])
                line += self.exact(size) + self.line()
            if line.startswith(tag + b" "):
                return untagged, line
            untagged.append(line)

    def cmd(self, text):
        tag = self.tag()
        self.send(tag + b" " + text.encode() + b"\r\n")
        return self.response(tag)

    def login(self):
        _, t = self.cmd(f'LOGIN {USER} "{PASSWORD}"')
        check(b" OK " in t, f"LOGIN {t!r}")
        return t

    def compress(self, pipelined=b""):
        """COMPRESS DEFLATE, and `pipelined` commands sent compressed right behind it."""
        tag = self.tag()
        self.deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        after = b""
        if pipelined:
            after = self.deflate.compress(pipelined) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        data = tag + b" COMPRESS DEFLATE\r\n" + after
        self.wire_out += len(data)
        self.sock.sendall(data)
        _, t = self.response(tag)
        check(t.startswith(tag + b" OK"), f"COMPRESS DEFLATE {t!r}")
        # What came after the OK is compressed.
        self.inflate = zlib.decompressobj(-15)
        raw, self.buf = self.buf, b""
        self.buf = self.inflate.decompress(raw)

    def append(self, msg):
        tag = self.tag()
        self.send(tag + f" APPEND INBOX {{{len(msg)}}}\r\n".encode())
        cont = self.line()
        check(cont.startswith(b"+"), f"continuation {cont!r}")
        self.send(msg + b"\r\n")
        _, t = self.response(tag)
        check(b" OK " in t, f"APPEND {t!r}")

    def fetch_body(self, seq):
        """(the message, bytes on the wire for the FETCH and its answer)."""
        before = self.wire_in + self.wire_out
        u, t = self.cmd(f"FETCH {seq} BODY.PEEK[]")
        check(b" OK " in t, f"FETCH {t!r}")
        body = [x for x in u if b" FETCH " in x]
        check(len(body) == 1, "one FETCH answer")
        line = body[0]
        start = line.index(b"}\r\n") + 3
        size = int(line[line.index(b"{") + 1:start - 3])
        return line[start:start + size], self.wire_in + self.wire_out - before


def message(seed):
    """About 200 KB: a text part and a base64 attachment, like real mail."""
    rnd = random.Random(seed)
    words = ("the meeting report quarterly figures are attached please review budget "
             "project schedule team update regards thanks customer invoice order shipping "
             "delivery status server mail client network office").split()
    head = (f"From: bob@example.test\r\nTo: {USER}\r\nSubject: report {seed}\r\n"
            "Message-ID: <r%d@example.test>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
            "Content-Type: text/plain\r\n\r\n" % seed).encode()
    text = b""
    while len(text) < 120_000:
        text += (" ".join(rnd.choice(words) for _ in range(12)) + "\r\n").encode()
    raw = bytes(rnd.getrandbits(8) for _ in range(60_000))
    b64 = base64.encodebytes(raw).replace(b"\n", b"\r\n")
    return (head + text + b"--b\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + b64 + b"--b--\r\n")


def main():
    port, tls_port = int(sys.argv[1]), int(sys.argv[2])

    # Not offered before login, nor accepted.
    c = Client(port)
    check(b"COMPRESS=DEFLATE" not in c.greeting, "no COMPRESS=DEFLATE before login")
    _, t = c.cmd("COMPRESS DEFLATE")
    check(b" BAD " in t, f"COMPRESS before login is BAD {t!r}")
    t = c.login()
    check(b"COMPRESS=DEFLATE" in t, "COMPRESS=DEFLATE offered after login")
    _, t = c.cmd("COMPRESS GZIP")
    check(b" BAD " in t, f"an unknown algorithm is BAD {t!r}")

    # The 200 KB message without compression.
    _, t = c.cmd("SELECT INBOX")
    check(b" OK " in t, "SELECT")
    plain_msg = message(1)
    c.append(plain_msg)
    body, plain_wire = c.fetch_body(1)
    check(body == plain_msg, "FETCH without COMPRESS gives the message back")
    _, t = c.cmd("LOGOUT")
    check(b" OK " in t, "LOGOUT")

    # With compression; a command pipelined behind COMPRESS is inflated first.
    c = Client(port)
    c.login()
    c.compress(pipelined=b"p1 NOOP\r\np2 CAPABILITY\r\n")
    u, t = c.response(b"p1")
    check(t.startswith(b"p1 OK"), f"NOOP pipelined behind COMPRESS {t!r}")
    u, t = c.response(b"p2")
    check(t.startswith(b"p2 OK"), "CAPABILITY, compressed")
    check(b"COMPRESS=DEFLATE" not in b"".join(u), "COMPRESS=DEFLATE no longer offered")
    _, t = c.cmd("COMPRESS DEFLATE")
    check(b" NO [COMPRESSIONACTIVE]" in t, f"a second COMPRESS {t!r}")
    _, t = c.cmd("SELECT INBOX")
    check(b" OK " in t, "SELECT, compressed")
    msg = message(2)
    before = c.wire_out
    c.append(msg)
    append_wire = c.wire_out - before
    check(append_wire < len(msg) * 3 // 4, f"APPEND sent compressed ({append_wire} bytes)")
    body, compressed_wire = c.fetch_body(2)
    check(body == msg, "FETCH with COMPRESS gives the message back")
    body, _ = c.fetch_body(1)
    check(body == plain_msg, "and the first one too")
    check(compressed_wire < plain_wire * 3 // 4, "FETCH smaller on the wire")
    u, t = c.cmd("LOGOUT")
    check(t.startswith(b"c") and b" OK " in t and any(b"BYE" in x for x in u), "LOGOUT")
    print(f"measured: message {len(msg)} bytes; FETCH BODY[] on the wire {plain_wire} bytes "
          f"without COMPRESS, {compressed_wire} with; APPEND {append_wire} bytes compressed")

    # Over TLS (993): compression on top of TLS.
    c = Client(tls_port, tls=True)
    c.login()
    c.compress()
    _, t = c.cmd("SELECT INBOX")
    check(b" OK " in t, "SELECT over TLS, compressed")
    body, tls_wire = c.fetch_body(2)
    check(body == msg, "FETCH over TLS with COMPRESS")
    # Many small commands, each answered completely (the server's sync flush).
    for i in range(50):
        _, t = c.cmd("NOOP")
        if b" OK " not in t:
            check(False, f"NOOP {i} {t!r}")
    check(True, "50 NOOPs, each answer complete")
    _, t = c.cmd("LOGOUT")
    check(b" OK " in t, "LOGOUT over TLS")
    print(f"measured: over TLS with COMPRESS the FETCH took {tls_wire} compressed bytes inside TLS")

    # Garbage after COMPRESS closes the connection, the server lives on.
    c = Client(port)
    c.login()
    c.compress()
    c.sock.sendall(b"\xff" * 64)
    try:
        while True:
            c.more()
    except (EOFError, ConnectionResetError, zlib.error):
        pass
    check(True, "garbage compressed input ends the connection")
    c = Client(port)
    c.login()
    c.cmd("LOGOUT")
    check(True, "the server still answers")


main()
