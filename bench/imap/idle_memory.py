#!/usr/bin/env python3
"""Resident memory of an IMAP server holding N idle sessions (logged in, INBOX selected, in IDLE).

    python3 bench/imap/idle_memory.py --pid PID --port PORT [--tls] [--connections 10000]
        --user 'user%d@example.test' --users 5 --pass secret [--with-children] [--sources 1]
        [--min-available-mib 8192] [--min-free-pids 4096] [--json FILE]

Run by bench/imap/idle_memory.sh, which starts the servers. Opens the connections from loopback
with asyncio (in batches, so the server's accept queue is not flooded), waits until every one is
idling, reads VmRSS of PID (and of its descendants, for a server with worker processes such as
Dovecot: --with-children) from /proc, prints it, then ends every session (DONE, LOGOUT).
For several processes the RSS sum counts shared pages once per process; PSS (proportional set
size, from smaps_rollup) shares them out and is printed beside it.

--sources K spreads the connections over the source addresses 127.0.0.1 .. 127.0.0.K (each a
port range of its own) for when one address's ephemeral ports run short.

Guards for a shared machine: no more sessions are opened once MemAvailable falls under
--min-available-mib, or fewer than --min-free-pids process ids are left under kernel.pid_max
(Dovecot runs one process per session); the figures are then for the sessions held, and the
output says why it stopped. Bounded: gives up after --timeout seconds (default 300).
"""
import argparse
import asyncio
import json
import os
import socket
import ssl
import sys
import time

IP_BIND_ADDRESS_NO_PORT = 24  # Linux: the port is chosen at connect(), per destination


def descendants(pid):
    pids, seen, frontier = [pid], {pid}, [pid]
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
    return pids


def memory_kib(pid, children):
    """(RSS sum, number of processes, PSS sum) in KiB."""
    pids = descendants(pid) if children else [pid]
    rss = pss = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            pass
    return rss, len(pids), pss


def mem_available_mib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    return 0


def free_pids():
    with open("/proc/sys/kernel/pid_max") as f:
        pid_max = int(f.read())
    with open("/proc/loadavg") as f:
        tasks = int(f.read().split()[3].split("/")[1])  # every thread holds an id
    return pid_max - tasks


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # both servers present a self-signed certificate
    return ctx


async def session(args, ctx, n, ready, stop):
    source = f"127.0.0.{n % args.sources + 1}"
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if args.sources > 1:
            sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((source, 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", args.port))
    except BaseException:
        sock.close()
        raise
    reader, writer = await asyncio.open_connection(
        sock=sock, ssl=ctx, server_hostname="localhost" if ctx else None)
    await reader.readline()
    user = args.user.replace("%d", str(n % args.users + 1))
    writer.write(f'a LOGIN "{user}" "{args.password}"\r\nb SELECT INBOX\r\nc IDLE\r\n'.encode())
    await writer.drain()
    while True:
        line = await reader.readline()
        if not line:
            raise RuntimeError("closed before IDLE")
        if line.startswith((b"a NO", b"a BAD", b"b NO", b"b BAD", b"c NO", b"c BAD")):
            raise RuntimeError(line.decode(errors="replace").strip())
        if line.startswith(b"+"):
            break
    ready.append(n)
    await stop.wait()
    try:
        writer.write(b"DONE\r\nd LOGOUT\r\n")
        await asyncio.wait_for(writer.drain(), 5)
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
    ap.add_argument("--sources", type=int, default=1, help="source addresses 127.0.0.1..K")
    ap.add_argument("--min-available-mib", type=int, default=8192)
    ap.add_argument("--min-free-pids", type=int, default=4096)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    if not 1 <= args.sources <= 254:
        ap.error("--sources: 1 to 254")
    ctx = tls_context() if args.tls else None
    before, _, pss_before = memory_kib(args.pid, args.with_children)
    avail_before = mem_available_mib()
    ready, stop = [], asyncio.Event()
    tasks = []
    t0 = time.time()
    stopped = None  # why fewer than --connections were opened

    failed = []

    async def one(n):
        try:
            await session(args, ctx, n, ready, stop)
        except Exception as e:  # noqa: BLE001 -- reported, and the run stops opening sessions
            failed.append(e)

    def failure():
        return failed[0] if failed else None

    for start in range(0, args.connections, args.batch):
        avail, pids = mem_available_mib(), free_pids()
        if avail < args.min_available_mib:
            stopped = f"MemAvailable {avail} MiB < {args.min_available_mib} MiB"
        elif pids < args.min_free_pids:
            stopped = f"{pids} free process ids < {args.min_free_pids}"
        if stopped:
            break
        end = min(start + args.batch, args.connections)
        for n in range(start, end):
            tasks.append(asyncio.create_task(one(n)))
        while len(ready) < end - args.batch // 2:
            if (e := failure()) is not None:
                stopped = f"a session failed: {e!r}"
                break
            if time.time() - t0 > args.timeout:
                stopped = f"timed out after {args.timeout:.0f} s"
                break
            await asyncio.sleep(0.05)
        if stopped:
            break
    # Every session opened so far gets to IDLE (or the time runs out).
    while len(ready) + len(failed) < len(tasks) and time.time() - t0 <= args.timeout:
        await asyncio.sleep(0.05)
    if len(ready) < len(tasks) and not stopped:
        e = failure()
        stopped = f"a session failed: {e!r}" if e else f"timed out after {args.timeout:.0f} s"
    setup = time.time() - t0
    await asyncio.sleep(1.0)
    after, procs, pss = memory_kib(args.pid, args.with_children)
    avail_after = mem_available_mib()
    client_rss, _, _ = memory_kib(os.getpid(), False)
    held = len(ready)
    kind = "TLS" if args.tls else "plain"
    per = (after - before) / held if held else 0.0
    per_pss = (pss - pss_before) / held if held else 0.0
    print(f"{args.label} {kind}: {held} of {args.connections} idle IMAP sessions: RSS "
          f"{after / 1024:.0f} MiB (PSS {pss / 1024:.0f} MiB; {procs} process(es); "
          f"{before / 1024:.0f} MiB before; {per:.1f} KiB per session; set up in {setup:.0f} s; "
          f"the machine's MemAvailable {avail_before} -> {avail_after} MiB; this client's RSS "
          f"{client_rss / 1024:.0f} MiB)"
          + (f"; stopped early: {stopped}" if stopped else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"label": args.label, "mode": kind, "asked": args.connections,
                       "held": held, "procs": procs, "rss_kib": after, "pss_kib": pss,
                       "rss_before_kib": before, "pss_before_kib": pss_before,
                       "rss_per_conn_kib": per, "pss_per_conn_kib": per_pss,
                       "setup_s": setup, "stopped": stopped,
                       "avail_before_mib": avail_before, "avail_after_mib": avail_after}, f)
    stop.set()
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=60)
        for t in pending:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return 0 if held else 1


sys.exit(asyncio.run(main()))
