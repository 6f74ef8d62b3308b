"""Load for the failover test (crates/mailfleet/tests/failover.rs): senders and IDLE readers
through the balancer while a node is killed.

Usage: failover_client.py SMTP_PORT IMAPS_PORT MESSAGES SENDERS PASSWORD USER...

Senders deliver MESSAGES messages in all, round robin over the users, as an MTA would: one SMTP
session for many messages, and on a connection error or a 4xx reply a new session and another
attempt. Every attempt has its own Message-ID (<LOGICAL.ATTEMPT@failover.test>), so a message
committed whose 250 was lost shows up as an extra copy, never as the acknowledged one twice.

One IMAP reader per user IDLEs through the balancer and reconnects whenever its connection
drops. Once the senders have finished, the readers must have heard (EXISTS) every message, and a
fresh session per user (a client reconnecting after the failover) reads every Message-ID.

Prints "HALF" once half the messages are acknowledged, then one JSON line with the outcome.
Exits 1 if an acknowledged message is missing or present more than once.
"""

import imaplib
import json
import smtplib
import socket
import ssl
import sys
import threading
import time

HOST = "127.0.0.1"
SMTP_PORT = int(sys.argv[1])
IMAP_PORT = int(sys.argv[2])
MESSAGES = int(sys.argv[3])
SENDERS = int(sys.argv[4])
PASSWORD = sys.argv[5]
USERS = sys.argv[6:]
DEADLINE = time.monotonic() + 240
# IMAP over TLS (993 behind the balancer): a node takes passwords only over TLS.
TLS = ssl.create_default_context()
TLS.check_hostname = False
TLS.verify_mode = ssl.CERT_NONE

lock = threading.Lock()
acked = {u: [] for u in USERS}  # user -> [message-id]
acked_count = 0
half_printed = False
smtp_retries = 0
reconnects = {u: 0 for u in USERS}
stop_readers = threading.Event()
errors = []


def note_ack(user, msgid):
    global acked_count, half_printed
    with lock:
        acked[user].append(msgid)
        acked_count += 1
        if not half_printed and acked_count >= MESSAGES // 2:
            half_printed = True
            print("HALF", flush=True)


def sender(index):
    global smtp_retries
    logical = list(range(index, MESSAGES, SENDERS))
    session = None
    for n in logical:
        user = USERS[n % len(USERS)]
        attempt = 0
        while True:
            if time.monotonic() > DEADLINE:
                with lock:
                    errors.append(f"message {n} not accepted before the deadline")
                return
            attempt += 1
            msgid = f"<{n}.{attempt}@failover.test>"
            body = (
                f"From: sender{index}@elsewhere.test\r\nTo: {user}\r\n"
                f"Subject: failover {n}\r\nMessage-ID: {msgid}\r\n\r\nmessage {n} attempt {attempt}\r\n"
            )
            try:
                if session is None:
                    session = smtplib.SMTP(HOST, SMTP_PORT, timeout=30)
                    session.ehlo("sender.failover.test")
                session.sendmail(f"sender{index}@elsewhere.test", [user], body)
                note_ack(user, msgid)
                # Paced so the second half of the load spans the failover.
                time.sleep(0.02)
                break
            except (smtplib.SMTPException, OSError):
                # 4xx, a dropped connection, a refused connect: a new session, another attempt.
                with lock:
                    smtp_retries += 1
                try:
                    if session is not None:
                        session.close()
                except Exception:
                    pass
                session = None
                time.sleep(0.2)
    if session is not None:
        try:
            session.quit()
        except Exception:
            pass


def message_ids(imap):
    typ, data = imap.select("INBOX")
    if typ != "OK":
        raise imaplib.IMAP4.error(f"SELECT: {data}")
    typ, data = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])") if int(data[0]) else ("OK", [])
    if typ != "OK":
        raise imaplib.IMAP4.error(f"FETCH: {data}")
    ids = []
    for item in data:
        if isinstance(item, tuple):
            for line in item[1].decode().splitlines():
                if line.lower().startswith("message-id:"):
                    ids.append(line.split(":", 1)[1].strip())
    return ids


def connect(user):
    imap = imaplib.IMAP4_SSL(HOST, IMAP_PORT, ssl_context=TLS, timeout=30)
    imap.login(user, PASSWORD)
    imap.select("INBOX")
    return imap


last_exists = {u: -1 for u in USERS}


class RawIdle:
    """One IMAP session in IDLE on a plain socket, with its own buffer (a timed-out read on
    imaplib's file object cannot be resumed)."""

    def __init__(self, user):
        raw = socket.create_connection((HOST, IMAP_PORT), timeout=30)
        self.sock = TLS.wrap_socket(raw, server_hostname="localhost")
        self.buf = b""
        self.expect_untagged(b"* OK")
        self.command(b"a1", f'LOGIN "{user}" "{PASSWORD}"'.encode())
        for line in self.command(b"a2", b"SELECT INBOX"):
            self.note(user, line)
        self.sock.sendall(b"a3 IDLE\r\n")
        line = self.line()
        if not line.startswith(b"+"):
            raise OSError(f"IDLE refused: {line!r}")

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise OSError("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def expect_untagged(self, prefix):
        line = self.line()
        if not line.startswith(prefix):
            raise OSError(f"expected {prefix!r}, got {line!r}")

    def command(self, tag, text):
        self.sock.sendall(tag + b" " + text + b"\r\n")
        lines = []
        while True:
            line = self.line()
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise OSError(f"{text!r}: {line!r}")
                return lines
            lines.append(line)

    @staticmethod
    def note(user, line):
        parts = line.split()
        if len(parts) == 3 and parts[0] == b"*" and parts[2] == b"EXISTS":
            with lock:
                last_exists[user] = int(parts[1])

    def wait(self, user, secs):
        """Reads what IDLE reports for up to `secs`."""
        end = time.monotonic() + secs
        while time.monotonic() < end:
            self.sock.settimeout(max(0.05, end - time.monotonic()))
            try:
                self.note(user, self.line())
            except (socket.timeout, ssl.SSLWantReadError):
                return
            finally:
                self.sock.settimeout(30)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def reader(user):
    session = None
    while not stop_readers.is_set() and time.monotonic() < DEADLINE:
        try:
            if session is None:
                session = RawIdle(user)
            session.wait(user, 0.5)
        except OSError:
            # The node behind this session died (or the balancer refused): reconnect.
            with lock:
                reconnects[user] += 1
            if session is not None:
                session.close()
            session = None
            time.sleep(0.2)
    if session is not None:
        session.close()


readers = [threading.Thread(target=reader, args=(u,)) for u in USERS]
senders = [threading.Thread(target=sender, args=(i,)) for i in range(SENDERS)]
started = time.monotonic()
for t in readers + senders:
    t.start()
for t in senders:
    t.join()
send_secs = time.monotonic() - started
# The IDLE readers hear the last deliveries within a second or two (one poll per node).
def mailbox_count(user):
    imap = imaplib.IMAP4_SSL(HOST, IMAP_PORT, ssl_context=TLS, timeout=30)
    imap.login(user, PASSWORD)
    typ, data = imap.status("INBOX", "(MESSAGES)")
    imap.logout()
    return int(data[0].decode().rsplit("MESSAGES", 1)[1].strip(" )"))


counts = {u: mailbox_count(u) for u in USERS}
catch_up = time.monotonic() + 15
while time.monotonic() < catch_up:
    with lock:
        seen = dict(last_exists)
    if all(seen[u] >= counts[u] for u in USERS):
        break
    time.sleep(0.1)
stop_readers.set()
for t in readers:
    t.join()

missing = 0
duplicated = 0
extra_copies = 0
for user in USERS:
    # A client that reconnects after the failover: a new session through the balancer.
    fresh = message_ids(connect(user))
    for msgid in acked[user]:
        count = fresh.count(msgid)
        if count == 0:
            missing += 1
            errors.append(f"{user}: acknowledged {msgid} is missing")
        elif count > 1:
            duplicated += 1
            errors.append(f"{user}: acknowledged {msgid} is there {count} times")
    extra_copies += len(fresh) - len(acked[user])
    if last_exists[user] != len(fresh):
        errors.append(
            f"{user}: the IDLE reader last heard EXISTS {last_exists[user]}, the mailbox holds {len(fresh)}"
        )

print(
    json.dumps(
        {
            "acknowledged": acked_count,
            "send_seconds": round(send_secs, 2),
            "smtp_retries": smtp_retries,
            "imap_reconnects": reconnects,
            "missing": missing,
            "duplicated": duplicated,
            "unacknowledged_copies": extra_copies,
            "errors": errors[:20],
        }
    ),
    flush=True,
)
sys.exit(0 if acked_count == MESSAGES and not errors else 1)
