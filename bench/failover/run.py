#!/usr/bin/env python3
"""Failover benchmark (not a test): how long a cluster takes to get over `kill -9` of its master.

Starts a throwaway PostgreSQL (initdb + pg_ctl in a temp dir, on a loopback port), three
`mailfleet node` processes on 127.0.0.2-4 and `mailfleet balancer` on 127.0.0.1 in front of
their SMTP ports (leastconn, PROXY v2, SMTP health check every second, down after 2 failures:
what `mailfleet up` writes). Then, TRIALS times (default 10):

  1. kill -9 the node that holds the master lease (from `mailfleet status --json`);
  2. time until the first new SMTP session through the balancer delivers a message (250),
     trying a new connection every 10 ms from the moment of the kill;
  3. time until the new master's first job (its `blob-gc` log line, which a node writes as
     soon as it becomes master);
  4. start the killed node again and wait until the balancer has it up.

Prints each trial and the median and maximum of both times. There is no peer to compare with
here: the figures are mailfleet's own.

Usage: MF_BIN=target/release/mailfleet bench/failover/run.py [TRIALS]
Needs PostgreSQL's server binaries (/usr/lib/postgresql/15/bin) and curl.
"""

import datetime
import json
import os
import shutil
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MF = os.environ.get("MF_BIN", os.path.join(ROOT, "target/release/mailfleet"))
PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")
TRIALS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
OFFSET = int(os.environ.get("MF_OFFSET", "24000"))
NODES = [("n1", "127.0.0.2"), ("n2", "127.0.0.3"), ("n3", "127.0.0.4")]
SMTP = 25 + OFFSET
ADMIN = 8404 + OFFSET
PG_PORT = 5432 + OFFSET // 10
USER = "bench@failover.test"

procs = {}
work = tempfile.mkdtemp(prefix="mailfleet-failover-", dir="/var/tmp")
pg_data = os.path.join(work, "pg")
URL = None


def free(port, host="127.0.0.1"):
    with socket.socket() as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def pg(*args, check=True):
    cmd = [os.path.join(PG_BIN, args[0]), *args[1:]]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, check=check, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def cleanup():
    for p in procs.values():
        if p.poll() is None:
            p.kill()
            p.wait()
    if os.path.isdir(pg_data):
        pg("pg_ctl", "-D", pg_data, "-m", "immediate", "stop", check=False)
    shutil.rmtree(work, ignore_errors=True)


def wait(what, cond, secs=60):
    end = time.monotonic() + secs
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise SystemExit(f"{what}: not within {secs} s")


def connects(host, port):
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def mf(*args, stdin=None):
    return subprocess.run(
        [MF, *args, "--store", URL], input=stdin, capture_output=True, text=True, check=True
    ).stdout


def start_node(server_id):
    conf = os.path.join(work, f"{server_id}.toml")
    log = open(os.path.join(work, f"{server_id}.stderr"), "a")
    procs[server_id] = subprocess.Popen(
        [MF, "node", "--config", conf],
        stdout=subprocess.DEVNULL,
        stderr=log,
        env={**os.environ, "RUST_LOG": "info"},
    )


def status():
    out = subprocess.run(
        [MF, "status", "--json", "--store", URL], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out)


def balancer_state(server):
    out = subprocess.run(
        ["curl", "-s", "--max-time", "2", f"http://127.0.0.1:{ADMIN}/stats"],
        capture_output=True,
        text=True,
    ).stdout
    try:
        for s in json.loads(out)["services"][0]["servers"]:
            if s["name"] == server:
                return s["state"]
    except (ValueError, KeyError, IndexError):
        return None
    return None


def one_delivery():
    s = smtplib.SMTP("127.0.0.1", SMTP, timeout=5)
    try:
        s.sendmail("probe@elsewhere.test", [USER], "Subject: failover probe\r\n\r\nprobe\r\n")
    finally:
        try:
            s.quit()
        except Exception:
            pass


def first_job_after(server_ids, since_wall):
    """The earliest `blob-gc` log line after `since_wall` from one of `server_ids`: (node, secs)."""
    best = None
    for sid in server_ids:
        logs = os.path.join(work, sid, "logs")
        if not os.path.isdir(logs):
            continue
        for name in os.listdir(logs):
            with open(os.path.join(logs, name), errors="replace") as f:
                for line in f:
                    if "job=blob-gc" not in line:
                        continue
                    stamp = line.split(" ", 1)[0]
                    try:
                        t = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
                    except ValueError:
                        continue
                    if t > since_wall and (best is None or t < best[1]):
                        best = (sid, t)
    return None if best is None else (best[0], best[1] - since_wall)


def main():
    global URL
    if not os.path.exists(MF):
        raise SystemExit(f"no mailfleet binary at {MF} (cargo build --release -p mailfleet, or MF_BIN=)")
    for port in [SMTP, ADMIN, PG_PORT]:
        if not free(port):
            raise SystemExit(f"port {port} is taken; choose another MF_OFFSET")
    os.makedirs(pg_data)
    if os.geteuid() == 0:
        shutil.chown(work, "postgres")
        shutil.chown(pg_data, "postgres")
    pg("initdb", "-D", pg_data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
    pg(
        "pg_ctl", "-D", pg_data, "-l", os.path.join(pg_data, "log"), "-w", "-o",
        f"-c listen_addresses=127.0.0.1 -c port={PG_PORT} -c unix_socket_directories={pg_data}",
        "start",
    )
    URL = f"postgres://postgres@127.0.0.1:{PG_PORT}/postgres"
    mf("domain", "add", "failover.test")
    mf("account", "add", USER, "--password-stdin", stdin="bench-secret\n")

    os.makedirs(os.path.join(work, "blobs"))
    for sid, addr in NODES:
        os.makedirs(os.path.join(work, sid))
        with open(os.path.join(work, f"{sid}.toml"), "w") as f:
            f.write(
                f'server_id = "{sid}"\nhostname = "{sid}.failover.test"\nstore = "{URL}"\n'
                f'data_dir = "{work}/{sid}"\nblobs = "fs:{work}/blobs"\nbind = "{addr}"\n'
                f'port_offset = {OFFSET}\ntrusted_proxies = ["127.0.0.1"]\n'
            )
        start_node(sid)
    for sid, addr in NODES:
        wait(f"{sid} SMTP", lambda: connects(addr, SMTP))
    conf = os.path.join(work, "balancer.toml")
    with open(conf, "w") as f:
        f.write(
            f'[admin]\nlisten = "127.0.0.1:{ADMIN}"\n\n[[service]]\nname = "smtp"\n'
            f'listen = ["127.0.0.1:{SMTP}"]\nscheduler = "leastconn"\nproxy_protocol = "v2"\n'
            f'reject = "smtp"\n'
            f'health = {{ check = "smtp", interval = "1s", rise = 2, fall = 2, timeout = "2s" }}\n'
        )
        for sid, addr in NODES:
            f.write(f'\n[[service.server]]\nname = "{sid}"\naddress = "{addr}:{SMTP}"\n')
    procs["balancer"] = subprocess.Popen(
        [MF, "balancer", "--config", conf],
        stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(work, "balancer.stderr"), "w"),
    )
    wait("balancer", lambda: connects("127.0.0.1", SMTP))
    wait("a master", lambda: status()["master"] is not None)
    one_delivery()

    sessions, jobs = [], []
    for trial in range(1, TRIALS + 1):
        master = status()["master"]["server_id"]
        others = [sid for sid, _ in NODES if sid != master]
        t0 = time.monotonic()
        t0_wall = time.time()
        os.kill(procs[master].pid, signal.SIGKILL)
        procs[master].wait()
        session = None
        while session is None and time.monotonic() - t0 < 60:
            try:
                one_delivery()
                session = time.monotonic() - t0
            except (OSError, smtplib.SMTPException):
                time.sleep(0.01)
        job = None
        end = time.monotonic() + 30
        while job is None and time.monotonic() < end:
            job = first_job_after(others, t0_wall)
            if job is None:
                time.sleep(0.05)
        if session is None or job is None:
            raise SystemExit(f"trial {trial}: session {session}, first job {job}")
        sessions.append(session)
        jobs.append(job[1])
        print(
            f"trial {trial:2}: killed master {master}; first new session after {session * 1000:7.1f} ms; "
            f"new master {job[0]} ran its first job after {job[1] * 1000:7.1f} ms",
            flush=True,
        )
        start_node(master)
        addr = dict(NODES)[master]
        wait(f"{master} back", lambda: connects(addr, SMTP))
        wait(f"{master} up in the balancer", lambda: balancer_state(master) == "up")
        wait(
            f"{master} alive",
            lambda: any(n["server_id"] == master and n["alive"] for n in status()["nodes"]),
        )

    def ms(v):
        return f"{v * 1000:.1f} ms"

    print(f"\n{TRIALS} trials, kill -9 of the master (3 nodes on PostgreSQL, balancer in front):")
    print(
        f"  first new session through the balancer: median {ms(statistics.median(sessions))}, "
        f"max {ms(max(sessions))}"
    )
    print(f"  new master's first job:                 median {ms(statistics.median(jobs))}, max {ms(max(jobs))}")


try:
    main()
finally:
    cleanup()
