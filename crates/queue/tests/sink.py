#!/usr/bin/env python3
"""A small SMTP sink for the queue tests (standard library only).

usage: sink.py OUTDIR [--auth] [--delay-ms N] [--no-dsn]

Listens on 127.0.0.1 (a free port, printed as "PORT n" on stdout) and answers by the
recipient's local part:
  temp*   451 4.3.0 at RCPT, always
  perm*   550 5.1.1 at RCPT
  once*   451 4.3.0 the first time this address is seen, then accepted
  hang*   accepted; the first DATA carrying it is never answered (the sink waits for the
          client to go away), later ones are accepted
  other   250
Every accepted message is written to OUTDIR/msg-<n>.eml with X-Sink-* lines in front
(helo, mail from, rcpt to, auth, tls). OUTDIR/events.log gets one line per event:
TEMPFAIL addr, PERMFAIL addr, HANG addr, ACCEPT addr, GONE addr.
--auth announces AUTH PLAIN LOGIN and accepts any credentials (recorded); --no-dsn leaves DSN
out of the EHLO reply (a next hop that does not do delivery status notifications); --delay-ms delays
the reply to each message (OUTDIR/held.log gets a line with its recipients when the delay
starts): a client that hangs up meanwhile gets its recipients logged as GONE and nothing is
written (the message was not accepted).
"""

import asyncio
import base64
import os
import sys

OUT = sys.argv[1]
AUTH = "--auth" in sys.argv
DSN = "--no-dsn" not in sys.argv
DELAY = 0.0
if "--delay-ms" in sys.argv:
    DELAY = int(sys.argv[sys.argv.index("--delay-ms") + 1]) / 1000.0

seen_once = set()
hung = set()
counter = [0]


def event(kind, addr):
    with open(os.path.join(OUT, "events.log"), "a") as f:
        f.write(f"{kind} {addr}\n")


def local_part(addr):
    return addr.split("@", 1)[0].lower()


async def session(reader, writer):
    def send(line):
        writer.write((line + "\r\n").encode())

    helo, mail, rcpts, user = "", None, [], ""
    send("220 sink.test ESMTP")
    await writer.drain()
    try:
        while True:
            line = await asyncio.wait_for(reader.readline(), 30)
            if not line:
                return
            cmd = line.decode("utf-8", "replace").rstrip("\r\n")
            verb = cmd.split(" ", 1)[0].upper()
            if verb == "EHLO":
                helo = cmd[5:].strip()
                caps = ["sink.test", "PIPELINING", "SIZE 10000000", "8BITMIME"]
                if DSN:
                    caps.append("DSN")
                if AUTH:
                    caps.append("AUTH PLAIN LOGIN")
                for c in caps[:-1]:
                    send("250-" + c)
                send("250 " + caps[-1])
            elif verb == "HELO":
                helo = cmd[5:].strip()
                send("250 sink.test")
            elif verb == "AUTH" and AUTH:
                parts = cmd.split()
                if parts[1].upper() == "PLAIN":
                    raw = base64.b64decode(parts[2]).split(b"\0")
                    user = raw[1].decode() + ":" + raw[2].decode()
                    send("235 2.7.0 ok")
                else:
                    send("334 VXNlcm5hbWU6")
                    await writer.drain()
                    u = base64.b64decode((await reader.readline()).strip()).decode()
                    send("334 UGFzc3dvcmQ6")
                    await writer.drain()
                    p = base64.b64decode((await reader.readline()).strip()).decode()
                    user = u + ":" + p
                    send("235 2.7.0 ok")
            elif verb == "MAIL":
                mail, rcpts = cmd, []
                send("250 2.1.0 ok")
            elif verb == "RCPT":
                addr = cmd.split("<", 1)[1].split(">", 1)[0]
                lp = local_part(addr)
                if lp.startswith("temp") or (lp.startswith("once") and addr not in seen_once):
                    seen_once.add(addr)
                    event("TEMPFAIL", addr)
                    send("451 4.3.0 try again later")
                elif lp.startswith("perm"):
                    event("PERMFAIL", addr)
                    send("550 5.1.1 no such user here")
                else:
                    rcpts.append((addr, cmd))
                    send("250 2.1.5 ok")
            elif verb == "DATA":
                send("354 go ahead")
                await writer.drain()
                data = b""
                while True:
                    chunk = await asyncio.wait_for(reader.readline(), 30)
                    if not chunk:
                        return
                    if chunk == b".\r\n":
                        break
                    if chunk.startswith(b".."):
                        chunk = chunk[1:]
                    data += chunk
                to_hang = [a for a, _ in rcpts if local_part(a).startswith("hang") and a not in hung]
                if to_hang:
                    for a in to_hang:
                        hung.add(a)
                        event("HANG", a)
                    await reader.read()  # until the client goes away
                    return
                if DELAY:
                    # The whole message is in and its answer held back (tests wait for this
                    # line in OUTDIR/held.log instead of guessing how long sending takes).
                    with open(os.path.join(OUT, "held.log"), "a") as f:
                        f.write(" ".join(a for a, _ in rcpts) + "\n")
                    # The client sends nothing while it waits for the reply, so end of
                    # input means it went away before being answered; noticed within 50 ms.
                    waited = 0.0
                    while waited < DELAY and not reader.at_eof():
                        step = min(0.05, DELAY - waited)
                        await asyncio.sleep(step)
                        waited += step
                    if reader.at_eof():
                        for addr, _ in rcpts:
                            event("GONE", addr)
                        return
                for addr, rcmd in rcpts:
                    counter[0] += 1
                    name = os.path.join(OUT, f"msg-{os.getpid()}-{counter[0]}.eml")
                    head = (
                        f"X-Sink-Helo: {helo}\r\nX-Sink-Mail: {mail}\r\nX-Sink-Rcpt: {rcmd}\r\n"
                        f"X-Sink-Auth: {user}\r\n"
                    ).encode()
                    with open(name + ".tmp", "wb") as f:
                        f.write(head + data)
                    os.rename(name + ".tmp", name)
                    event("ACCEPT", addr)
                send("250 2.0.0 queued")
            elif verb == "RSET":
                mail, rcpts = None, []
                send("250 ok")
            elif verb == "QUIT":
                send("221 bye")
                await writer.drain()
                return
            else:
                send("502 5.5.2 not implemented")
            await writer.drain()
    except (asyncio.TimeoutError, ConnectionError, IndexError, ValueError):
        return
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(session, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    # Stop when the test goes away (stdin closes) or after ten minutes at most.
    loop = asyncio.get_running_loop()
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    await asyncio.wait_for(stdin_closed, 600)


try:
    asyncio.run(main())
except (asyncio.TimeoutError, KeyboardInterrupt):
    pass
