#!/usr/bin/env python3
"""The lab's Git hosts, all on 127.0.0.1, each logging every connection it accepts.

  netlab.py git    --port P --root DIR --log FILE      smart-HTTP Git server (git http-backend)
  netlab.py tarpit --port P --log FILE                 accepts TCP and never answers
  netlab.py proxy  --port P --log FILE --map HOST:PORT=HOST:PORT ... [--host ADDR] [--only-mapped]
                                                       HTTP proxy (absolute-form and CONNECT)
  netlab.py farhost --port P --log FILE --upstream HOST:PORT
                   (--outage-end-file FILE [--return-after-probe S | --return-before-probe S]
                    | --success-fraction F --seed S
                    | --outage-window-file FILE [--down-mode tarpit|refuse] | --down-file FILE)
                                                       a Git host when it is not simply down:
                                                       tarpits (or refuses) some connections and
                                                       relays the others to the Git server (see
                                                       farhost)
  netlab.py committer --root DIR --repo PATH ... --every S --log FILE [--max-commits N]
                                                       adds a commit to each of those repositories
                                                       every S seconds (see committer)

--host: the proxy's listen address (default 127.0.0.1; the node tests use their Pod bridge's
address). --only-mapped: refuse (403) any target that no --map names, so the proxy can only ever
reach the lab's own servers.

Logs are CSV lines: unix time, event, detail. Every server stops by itself after --max-seconds.
"""

import argparse
import asyncio
import hashlib
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class EventLog:
    """Append-only CSV of events, flushed per line so a killed server loses nothing."""

    def __init__(self, path):
        self._f = open(path, "a", buffering=1)
        self._lock = threading.Lock()

    def write(self, event, detail=""):
        with self._lock:
            self._f.write(f"{time.time():.3f},{event},{detail}\n")


def stop_after(seconds):
    """Every lab server is bounded in time, whatever happens to the script that started it."""
    t = threading.Timer(seconds, lambda: os._exit(0))
    t.daemon = True
    t.start()


# --------------------------------------------------------------------------------------------
# git smart HTTP


def git_server(args):
    log = EventLog(args.log)
    root = os.path.abspath(args.root)

    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0 without keep-alive: one accepted connection per request, so the connection
        # count is also the request count (a clone is two: info/refs and git-upload-pack).
        protocol_version = "HTTP/1.0"

        def log_message(self, *a):
            pass

        def _cgi(self):
            # A proxy may forward the absolute-form target as is.
            path = self.path
            if "://" in path:
                s = urlsplit(path)
                path = s.path + ("?" + s.query if s.query else "")
            path_info, _, query = path.partition("?")
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "GIT_PROJECT_ROOT": root,
                "GIT_HTTP_EXPORT_ALL": "1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path_info,
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_ADDR": self.client_address[0],
                "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                "HOME": root,
            }
            proc = subprocess.run(
                ["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60
            )
            head, _, payload = proc.stdout.partition(b"\r\n\r\n")
            if not _:
                head, _, payload = proc.stdout.partition(b"\n\n")
            status = 200
            headers = []
            for line in head.decode("latin-1").splitlines():
                k, _, v = line.partition(":")
                if k.lower() == "status":
                    status = int(v.strip().split()[0])
                elif k:
                    headers.append((k, v.strip()))
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            log.write("request", f"{self.command} {path_info} {status}")

        do_GET = _cgi
        do_POST = _cgi

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128

        def verify_request(self, request, client_address):
            log.write("accept", f"{client_address[0]}:{client_address[1]}")
            return True

    srv = Server(("127.0.0.1", args.port), Handler)
    log.write("listen", f"127.0.0.1:{args.port}")
    srv.serve_forever()


# --------------------------------------------------------------------------------------------
# tarpit


async def tarpit(args):
    log = EventLog(args.log)
    open_conns = 0

    async def handle(reader, writer):
        nonlocal open_conns
        peer = writer.get_extra_info("peername")
        if open_conns >= args.max_conns:
            writer.close()
            log.write("refused", f"{peer[0]}:{peer[1]}")
            return
        open_conns += 1
        start = time.monotonic()
        log.write("accept", f"{peer[0]}:{peer[1]}")
        received = 0
        try:
            # Read and discard what the client sends, answer nothing, until it gives up.
            async with asyncio.timeout(args.hold_seconds):
                while True:
                    data = await reader.read(65536)
                    if not data:
                        break
                    received += len(data)
        except (TimeoutError, ConnectionError):
            pass
        finally:
            open_conns -= 1
            writer.close()
            log.write("close", f"{peer[0]}:{peer[1]} {time.monotonic() - start:.3f}s {received}B")

    srv = await asyncio.start_server(handle, "127.0.0.1", args.port, backlog=512)
    log.write("listen", f"127.0.0.1:{args.port}")
    async with srv:
        await srv.serve_forever()


# --------------------------------------------------------------------------------------------
# HTTP proxy


async def proxy(args):
    log = EventLog(args.log)
    mapping = {}
    for m in args.map:
        src, dst = m.split("=")
        mapping[src.lower()] = dst

    async def pipe(r, w):
        try:
            while True:
                data = await r.read(65536)
                if not data:
                    break
                w.write(data)
                await w.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            try:
                w.close()
            except Exception:
                pass

    def target(hostport):
        hostport = hostport.lower()
        if args.only_mapped and hostport not in mapping:
            raise PermissionError(f"{hostport} is not mapped")
        dst = mapping.get(hostport, hostport)
        host, _, port = dst.rpartition(":")
        return host, int(port), dst

    async def handle(reader, writer):
        peer = writer.get_extra_info("peername")
        log.write("accept", f"{peer[0]}:{peer[1]}")
        try:
            async with asyncio.timeout(30):
                head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        method, uri, version = lines[0].split(" ", 2)
        try:
            if method == "CONNECT":
                host, port, dst = target(uri)
                up_r, up_w = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
                log.write("connect", f"{uri} -> {dst}")
            else:
                u = urlsplit(uri)
                hostport = u.netloc if u.port else f"{u.hostname}:80"
                host, port, dst = target(hostport)
                up_r, up_w = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
                path = (u.path or "/") + ("?" + u.query if u.query else "")
                out = [f"{method} {path} {version}"]
                out += [h for h in lines[1:] if h and not h.lower().startswith("proxy-")]
                up_w.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))
                log.write("forward", f"{method} {uri} -> {dst}")
        except PermissionError as e:
            log.write("refused", f"{method} {uri} {e}")
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        except (OSError, TimeoutError) as e:
            log.write("error", f"{method} {uri} {e}")
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

    srv = await asyncio.start_server(handle, args.host, args.port, backlog=512)
    log.write("listen", f"{args.host}:{args.port}")
    async with srv:
        await srv.serve_forever()


# --------------------------------------------------------------------------------------------
# far host that comes back, or answers only some attempts


def attempt_served(seed, repo, n, fraction):
    """Whether attempt n (0, 1, ...) at one repository is answered: a hash of (seed, repository,
    n) against the fraction. Each repository's sequence of answers is then the same in every run
    with the same seed, whatever order source-controller's workers happen to try them in."""
    h = hashlib.sha256(f"{seed}:{repo}:{n}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64 < fraction


async def farhost(args):
    """The far Git host. Each connection's first request decides what it gets:

    - with --outage-end-file: tarpitted (as `tarpit`) until the unix time written in that file,
      relayed to the Git server (--upstream) from then on; no file yet means still down;
    - with --down-file: tarpitted while that file exists, relayed while it does not;
    - with --success-fraction: an attempt is one clone, a GET .../info/refs followed by a POST
      .../git-upload-pack on a new connection (HTTP/1.0 upstream); the GET decides, by
      attempt_served, and the POSTs of that repository follow the decision of its last GET.

    - with --outage-window-file: down between the two unix times written in that file (no file
      yet: up), up before and after; down means tarpitted (--down-mode tarpit) or, with
      --down-mode refuse, no listening socket at all, so connections are refused.

    With --return-after-probe S (or --return-before-probe S) the host does not come back at the
    outage's end itself but S seconds after the first probe of fluxgate (a request whose
    User-Agent says "host probe") it receives from then on (or S seconds before the next probe is
    due: that probe's time plus the shortest gap between the probes seen so far, minus S). The
    time it comes back is logged as the event "return".

    The request head is read before deciding; a tarpitted connection gets no byte back, like the
    plain tarpit, and a relayed one is answered by the real Git server, which holds every
    repository under its far-host path too. Requests from fluxgate's probe are logged with
    " probe" after the path."""
    log = EventLog(args.log)
    up_host, _, up_port = args.upstream.rpartition(":")
    attempts = {}
    decided = {}
    outage_end = [None]
    window = [None]
    # When the host comes back (f with --return-*-probe: set by a probe), and the probes seen.
    returns_at = [None]
    probe_times = []

    def read_floats(path):
        try:
            with open(path) as f:
                return [float(x) for x in f.read().split()]
        except (OSError, ValueError):
            return None

    def in_window(now):
        if window[0] is None:
            w = read_floats(args.outage_window_file)
            if not w or len(w) != 2:
                return False
            window[0] = w
        return window[0][0] <= now < window[0][1]

    def down_now(probe=False):
        now = time.time()
        if returns_at[0] is not None:
            return now < returns_at[0]
        if outage_end[0] is None:
            end = read_floats(args.outage_end_file)
            if not end:
                return True
            outage_end[0] = end[0]
        if probe:
            probe_times.append(now)
        if now < outage_end[0]:
            return True
        if args.return_after_probe is None and args.return_before_probe is None:
            returns_at[0] = outage_end[0]
            log.write("return", f"{returns_at[0]:.3f} at the outage's end")
            return False
        if not probe:
            return True
        if args.return_after_probe is not None:
            returns_at[0] = now + args.return_after_probe
            how = f"{args.return_after_probe}s after a probe"
        else:
            gaps = [b - a for a, b in zip(probe_times, probe_times[1:])]
            gap = min(gaps[-5:]) if gaps else 3.0
            returns_at[0] = now + max(0.0, gap - args.return_before_probe)
            how = f"{args.return_before_probe}s before the next probe (shortest gap {gap:.3f}s)"
        log.write("return", f"{returns_at[0]:.3f} {how}")
        return now < returns_at[0]

    def decide(method, path, probe=False):
        if args.outage_window_file:
            return not (args.down_mode == "tarpit" and in_window(time.time()))
        if args.outage_end_file:
            return not down_now(probe)
        if args.down_file:
            return not os.path.exists(args.down_file)
        repo = path.split("?", 1)[0]
        for suffix in ("/info/refs", "/git-upload-pack", "/git-receive-pack"):
            if repo.endswith(suffix):
                repo = repo[: -len(suffix)]
                break
        if method == "GET" and path.split("?", 1)[0].endswith("/info/refs"):
            n = attempts.get(repo, 0)
            attempts[repo] = n + 1
            decided[repo] = attempt_served(args.seed, repo, n, args.success_fraction)
            return decided[repo]
        return decided.get(repo, False)

    async def pipe(r, w):
        n = 0
        try:
            while True:
                data = await r.read(65536)
                if not data:
                    break
                n += len(data)
                w.write(data)
                await w.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            try:
                w.close()
            except Exception:
                pass
        return n

    async def handle(reader, writer):
        peer = writer.get_extra_info("peername")
        who = f"{peer[0]}:{peer[1]}"
        start = time.monotonic()
        log.write("accept", who)
        head = b""
        served = False
        received = 0
        try:
            async with asyncio.timeout(args.hold_seconds):
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError as e:
                    head = e.partial
                except asyncio.LimitOverrunError:
                    head = b""
                received = len(head)
                line = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
                method, path = (line[0], line[1]) if len(line) >= 2 else ("?", "?")
                if "://" in path:
                    s = urlsplit(path)
                    path = s.path + ("?" + s.query if s.query else "")
                probe = b"host probe" in head.lower() and b"\r\nuser-agent:" in head.lower()
                served = bool(head) and decide(method, path, probe)
                log.write("serve" if served else "tarpit",
                          f"{who} {method} {path.split('?', 1)[0]}" + (" probe" if probe else ""))
                if not served:
                    # As the tarpit: read and discard, answer nothing, until the client gives up.
                    while True:
                        data = await reader.read(65536)
                        if not data:
                            break
                        received += len(data)
        except (TimeoutError, ConnectionError):
            pass
        if not served:
            writer.close()
            log.write("close", f"{who} {time.monotonic() - start:.3f}s {received}B")
            return
        try:
            up_r, up_w = await asyncio.wait_for(asyncio.open_connection(up_host, int(up_port)), 10)
        except (OSError, TimeoutError) as e:
            log.write("error", f"{who} {e}")
            writer.close()
            return
        up_w.write(head)
        sent, back = await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        log.write("done", f"{who} {time.monotonic() - start:.3f}s {received + sent}B {back}B")

    if not (args.outage_window_file and args.down_mode == "refuse"):
        srv = await asyncio.start_server(handle, "127.0.0.1", args.port, backlog=512)
        log.write("listen", f"127.0.0.1:{args.port}")
        async with srv:
            await srv.serve_forever()
        return
    # Refusing: no listening socket while the window lasts (checked every 50 ms; the process
    # ends after --max-seconds whatever happens).
    srv = None
    while True:
        down = in_window(time.time())
        if down and srv is not None:
            srv.close()
            srv = None
            log.write("down", "refusing")
        elif not down and srv is None:
            srv = await asyncio.start_server(handle, "127.0.0.1", args.port, backlog=512, reuse_address=True)
            log.write("listen", f"127.0.0.1:{args.port}")
        await asyncio.sleep(0.05)


# --------------------------------------------------------------------------------------------
# new commits on the Git server during a run


def git(repo, *argv, stdin=None):
    out = subprocess.run(["git", "--git-dir", repo, *argv], input=stdin, capture_output=True,
                         timeout=30, check=True)
    return out.stdout.decode().strip()


def committer(args):
    """Adds one commit to each --repo (a bare repository under --root) every --every seconds,
    spread evenly over that period so the Git server sees a steady trickle, until --max-seconds
    or --max-commits. Each repository's branch is first reset to its root commit, so every run
    starts from the same one-commit history however many runs came before.

    A commit changes the ConfigMap in app.yaml (data.revision: N); the log line is
    `commit,<repo> <N> <sha>`."""
    log = EventLog(args.log)
    repos = [os.path.join(os.path.abspath(args.root), r) for r in args.repo]
    ref = f"refs/heads/{args.branch}"
    for r in repos:
        root = git(r, "rev-list", "--max-parents=0", ref).split()[-1]
        git(r, "update-ref", ref, root)
        log.write("reset", f"{os.path.relpath(r, args.root)} {root}")
    start = time.time()
    counts = {r: 0 for r in repos}
    made = 0
    step = args.every / max(len(repos), 1)
    # Bounded: at most --max-commits commits, and the process ends at --max-seconds anyway.
    k = 0
    while made < args.max_commits:
        r = repos[k % len(repos)]
        due = start + args.every + k * step
        k += 1
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        counts[r] += 1
        n = counts[r]
        blob = git(r, "hash-object", "-w", "--stdin", stdin=(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n"
            f"  greeting: hello\n  revision: \"{n}\"\n").encode())
        tree = git(r, "mktree", stdin=f"100644 blob {blob}\tapp.yaml\n".encode())
        parent = git(r, "rev-parse", ref)
        env_args = ["-c", "user.name=platform", "-c", "user.email=platform@lab.test"]
        sha = subprocess.run(["git", *env_args, "--git-dir", r, "commit-tree", tree, "-p", parent,
                              "-m", f"revision {n}"], capture_output=True, timeout=30,
                             check=True).stdout.decode().strip()
        git(r, "update-ref", ref, sha, parent)
        made += 1
        log.write("commit", f"{os.path.relpath(r, args.root)} {n} {sha}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("git", "tarpit", "proxy", "farhost", "committer"):
        s = sub.add_parser(name)
        if name != "committer":
            s.add_argument("--port", type=int, required=True)
        s.add_argument("--log", required=True)
        s.add_argument("--max-seconds", type=float, default=4 * 3600)
        if name == "git":
            s.add_argument("--root", required=True)
        if name == "tarpit":
            s.add_argument("--max-conns", type=int, default=2000)
            s.add_argument("--hold-seconds", type=float, default=3600)
        if name == "proxy":
            s.add_argument("--map", action="append", default=[])
            s.add_argument("--host", default="127.0.0.1")
            s.add_argument("--only-mapped", action="store_true")
        if name == "farhost":
            s.add_argument("--upstream", required=True, help="the Git server, HOST:PORT")
            s.add_argument("--hold-seconds", type=float, default=3600)
            mode = s.add_mutually_exclusive_group(required=True)
            mode.add_argument("--outage-end-file", help="holds the unix time the host comes back")
            mode.add_argument("--success-fraction", type=float, help="share of attempts answered")
            mode.add_argument("--outage-window-file", help="holds the unix times the host is down between")
            mode.add_argument("--down-file", help="down while this file exists")
            s.add_argument("--seed", default="fluxgate-lab", help="for --success-fraction")
            s.add_argument("--down-mode", choices=("tarpit", "refuse"), default="tarpit",
                           help="for --outage-window-file: how the host is down")
            ret = s.add_mutually_exclusive_group()
            ret.add_argument("--return-after-probe", type=float, help="for --outage-end-file, seconds")
            ret.add_argument("--return-before-probe", type=float, help="for --outage-end-file, seconds")
        if name == "committer":
            s.add_argument("--root", required=True)
            s.add_argument("--repo", action="append", required=True,
                           help="a bare repository, relative to --root (repeatable)")
            s.add_argument("--branch", default="main")
            s.add_argument("--every", type=float, required=True, help="seconds between two commits of one repository")
            s.add_argument("--max-commits", type=int, default=20000)
    args = p.parse_args()
    stop_after(args.max_seconds)
    if args.cmd == "git":
        git_server(args)
    elif args.cmd == "tarpit":
        asyncio.run(tarpit(args))
    elif args.cmd == "farhost":
        asyncio.run(farhost(args))
    elif args.cmd == "committer":
        committer(args)
    else:
        asyncio.run(proxy(args))


if __name__ == "__main__":
    sys.exit(main())
