#!/usr/bin/env python3
"""Resident memory of an IMAP server holding N idle sessions (logged in, INBOX selected, in IDLE).

    python3 bench/imap/idle_memory.py --pid PID --port PORT [--tls] [--connections 10000]
        --user 'user%d@example.test' --users 5 --pass secret

Opens the connections from 127.0.0.1 with asyncio (in batches, so the server's accept queue is
not flooded), waits until every one is idling, reads VmRSS of PID (and of its children, for a
server with worker processes such as Dovecot: --with-children) from /proc, prints it, closes.
For several processes the RSS sum counts shared pages once per process; PSS (proportional set
size, from smaps_rollup) shares them out and is printed beside it.
Bounded: gives up after --timeout seconds (default 300).
"""
import argparse
import asyncio
import os
import ssl
import sys
import time


def rss_kib(pid, children):
    pids = [pid]
    if children:
        seen = {pid}
        frontier = [pid]
        while frontier:
            p = frontier.pop()
            try:
                for t in os.listdir(f"/proc/{p}/task"):
                    with open(f"/proc/{p}/task/{t}/children") as f:
                        for c in f.read().split():
                            c = int(c)
                            if c not in seen:
                                seen.add(c)
                                frontier.append(c)
                                pids.append(c)
            except OSError:
                pass
    total = 0
    pss = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            pass
    return total, len(pids), pss


async def session(args, n, ready, stop):
    ctx = None
    if args.tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection("127.0.0.1", args.port, ssl=ctx)
    await reader.readline()
    user = args.user.replace("%d", str(n % args.users + 1))
    writer.write(f'a LOGIN "{user}" "{args.password}"\r\nb SELECT INBOX\r\nc IDLE\r\n'.encode())
    await writer.drain()
    while True:
        line = await reader.readline()
        if not line:
            raise RuntimeError("closed before IDLE")
        if line.startswith(b"a NO") or line.startswith(b"b NO") or line.startswith(b"a BAD"):
            raise RuntimeError(line.decode(errors="replace"))
        if line.startswith(b"+"):
            break
    ready.append(n)
    await stop.wait()
    writer.write(b"DONE\r\nd LOGOUT\r\n")
    try:
        await writer.drain()
        writer.close()
    except Exception:
        pass


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--tls", action="store_true")
    ap.add_argument("--connections", type=int, default=10000)
    ap.add_argument("--user", default="user%d@example.test")
    ap.add_argument("--users", type=int, default=5)
    ap.add_argument("--pass", dest="password", default="secret")
    ap.add_argument("--with-children", action="store_true")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--label", default="server")
    ap.add_argument("--batch", type=int, default=50, help="connections opened at a time")
    args = ap.parse_args()
    before, _, _ = rss_kib(args.pid, args.with_children)
    ready, stop = [], asyncio.Event()
    tasks = []
    t0 = time.time()
    for start in range(0, args.connections, args.batch):
        for n in range(start, min(start + args.batch, args.connections)):
            tasks.append(asyncio.create_task(session(args, n, ready, stop)))
        while len(ready) < min(start + args.batch, args.connections) - args.batch // 2:
            failed = [t for t in tasks if t.done() and t.exception()]
            if failed:
                print(f"{args.label}: a session failed: {failed[0].exception()}", file=sys.stderr)
                stop.set()
                sys.exit(1)
            if time.time() - t0 > args.timeout:
                print(f"{args.label}: timed out with {len(ready)} sessions idling", file=sys.stderr)
                sys.exit(1)
            await asyncio.sleep(0.05)
    while len(ready) < args.connections:
        if time.time() - t0 > args.timeout or any(t.done() and t.exception() for t in tasks):
            print(f"{args.label}: only {len(ready)} sessions idling", file=sys.stderr)
            sys.exit(1)
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    after, procs, pss = rss_kib(args.pid, args.with_children)
    kind = "TLS" if args.tls else "plain"
    print(f"{args.label} {kind}: {args.connections} idle IMAP sessions: RSS {after / 1024:.0f} MiB "
          f"(PSS {pss / 1024:.0f} MiB; {procs} process(es); {before / 1024:.0f} MiB before; "
          f"{(after - before) / args.connections:.1f} KiB per session; set up in {time.time() - t0:.0f} s)")
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)


asyncio.run(main())
