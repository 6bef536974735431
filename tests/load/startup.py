"""Starts a server and measures spawn-to-first-answer: polls with an HTTPS POST every millisecond
until a 200 arrives. Prints "PID MILLISECONDS"; the server keeps running with its output in LOG.

usage: startup.py PORT CA_FILE BODY_FILE LOG -- COMMAND...
"""
import http.client
import ssl
import subprocess
import sys
import time

TIMEOUT_S = 30


def main():
    port, ca, body_file, log = sys.argv[1:5]
    command = sys.argv[sys.argv.index("--") + 1:]
    body = open(body_file, "rb").read()
    context = ssl.create_default_context(cafile=ca)
    with open(log, "wb") as out:
        started = time.monotonic()
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    while time.monotonic() - started < TIMEOUT_S:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}")
        try:
            conn = http.client.HTTPSConnection("127.0.0.1", int(port), context=context, timeout=2)
            conn.request("POST", "/mutate", body, {"content-type": "application/json"})
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                elapsed_ms = (time.monotonic() - started) * 1000
                print(proc.pid, f"{elapsed_ms:.1f}")
                return
        except (ConnectionError, OSError):
            pass
        time.sleep(0.001)
    proc.terminate()
    sys.exit("no 200 within %ds" % TIMEOUT_S)


if __name__ == "__main__":
    main()
