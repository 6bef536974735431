#!/usr/bin/env python3
"""Writes a container image as an OCI image layout archive, without a container engine.

  oci.py --out IMAGE.tar --name REF --file SRC:DEST[:MODE] ... [--dockerfile Dockerfile]
         [--user UID:GID] [--entrypoint PATH] [--cmd ARG ...] [--port N ...] [--libs]

The image has one layer holding what a distroless base gives a program: /etc/passwd and
/etc/group with root, nobody and nonroot (65532), /etc/nsswitch.conf, the CA bundle at
/etc/ssl/certs/ca-certificates.crt, /tmp (1777) and /home/nonroot, plus the given files and,
with --libs, the shared libraries each ELF file needs (as ldd resolves them on this host, at
the same paths, the dynamic loader included).

With --dockerfile, USER, ENTRYPOINT, CMD and EXPOSE are read from that Dockerfile's last stage,
so an image built here starts exactly as one built from the Dockerfile does; --user and the
others override it.

The archive is reproducible (fixed timestamps and owners, sorted entries) and is what
`ctr images import` and `skopeo copy oci-archive:` read. Prints the manifest digest.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tarfile

CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

PASSWD = """root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
"""
GROUP = """root:x:0:
nobody:x:65534:
nonroot:x:65532:
"""
NSSWITCH = """passwd: files
group: files
hosts: files dns
"""


def dockerfile_config(path):
    """USER, ENTRYPOINT, CMD and EXPOSE of the last stage of a Dockerfile (exec form only)."""
    lines, cur = [], ""
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if line.lstrip().startswith("#") and not cur:
                continue
            if line.endswith("\\"):
                cur += line[:-1] + " "
                continue
            cur += line
            if cur.strip():
                lines.append(cur.strip())
            cur = ""
    stage = []
    for line in lines:
        if re.match(r"(?i)^FROM\s", line):
            stage = []
        stage.append(line)
    cfg = {"ports": []}
    for line in stage:
        word, _, rest = line.partition(" ")
        word, rest = word.upper(), rest.strip()
        if word == "USER":
            cfg["user"] = rest
        elif word in ("ENTRYPOINT", "CMD"):
            if not rest.startswith("["):
                sys.exit(f"{path}: {word} must use the exec form (a JSON array)")
            cfg[word.lower()] = json.loads(rest)
        elif word == "EXPOSE":
            cfg["ports"] += rest.split()
    return cfg


def shared_libs(path):
    """Absolute paths of the shared objects `path` loads, the loader included (empty if static)."""
    out = subprocess.run(["ldd", path], capture_output=True, text=True)
    if out.returncode != 0 or "not a dynamic executable" in out.stdout + out.stderr:
        return []
    libs = []
    for line in out.stdout.splitlines():
        line = line.strip()
        m = re.match(r"\S+ => (/\S+) \(0x", line) or re.match(r"(/\S+) \(0x", line)
        if m:
            libs.append(m.group(1))
        elif "=> not found" in line:
            sys.exit(f"{path}: {line}")
    return libs


def is_elf(path):
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


class Layer:
    def __init__(self):
        self.entries = {}  # dest path -> (kind, data/None, mode, uid, gid)

    def dir(self, path, mode=0o755, uid=0, gid=0):
        parts = path.strip("/").split("/")
        for i in range(1, len(parts)):
            p = "/".join(parts[:i])
            self.entries.setdefault(p, ("dir", None, 0o755, 0, 0))
        self.entries[path.strip("/")] = ("dir", None, mode, uid, gid)

    def file(self, path, data, mode=0o644, uid=0, gid=0):
        parent = os.path.dirname(path.strip("/"))
        if parent and parent not in self.entries:
            self.dir("/" + parent)
        self.entries[path.strip("/")] = ("file", data, mode, uid, gid)

    def tar(self):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
            for name in sorted(self.entries):
                kind, data, mode, uid, gid = self.entries[name]
                info = tarfile.TarInfo(name)
                info.mtime = 0
                info.mode = mode
                info.uid, info.gid = uid, gid
                info.uname = info.gname = ""
                if kind == "dir":
                    info.type = tarfile.DIRTYPE
                    t.addfile(info)
                else:
                    info.size = len(data)
                    t.addfile(info, io.BytesIO(data))
        return buf.getvalue()


def blob(blobs, data, media_type):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--name", required=True, help="image reference, e.g. ghcr.io/fluxgate/fluxgate:e2e")
    p.add_argument("--file", action="append", default=[], help="SRC:DEST[:MODE(octal)]")
    p.add_argument("--dockerfile")
    p.add_argument("--user")
    p.add_argument("--entrypoint", nargs="+")
    p.add_argument("--cmd", nargs="*")
    p.add_argument("--port", action="append", default=[])
    p.add_argument("--env", action="append", default=[], help="NAME=VALUE")
    p.add_argument("--libs", action="store_true", help="add the shared libraries of ELF files")
    a = p.parse_args()

    cfg = dockerfile_config(a.dockerfile) if a.dockerfile else {"ports": []}
    if a.user:
        cfg["user"] = a.user
    if a.entrypoint:
        cfg["entrypoint"] = a.entrypoint
    if a.cmd is not None:
        cfg["cmd"] = a.cmd
    cfg["ports"] = cfg["ports"] + a.port

    layer = Layer()
    layer.dir("/tmp", 0o1777)
    layer.dir("/home/nonroot", 0o700, 65532, 65532)
    layer.dir("/root", 0o700)
    layer.file("/etc/passwd", PASSWD.encode())
    layer.file("/etc/group", GROUP.encode())
    layer.file("/etc/nsswitch.conf", NSSWITCH.encode())
    with open(CA_BUNDLE, "rb") as f:
        layer.file(CA_BUNDLE, f.read())

    libs = set()
    for spec in a.file:
        parts = spec.split(":")
        src, dest = parts[0], parts[1]
        mode = int(parts[2], 8) if len(parts) > 2 else (0o755 if os.access(src, os.X_OK) else 0o644)
        with open(src, "rb") as f:
            layer.file(dest, f.read(), mode)
        if a.libs and is_elf(src):
            libs.update(shared_libs(src))
    for lib in sorted(libs):
        with open(os.path.realpath(lib), "rb") as f:
            layer.file(lib, f.read(), 0o755)

    raw = layer.tar()
    compressed = gzip.compress(raw, mtime=0)
    blobs = {}
    layer_desc = blob(blobs, compressed, "application/vnd.oci.image.layer.v1.tar+gzip")
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "SSL_CERT_FILE=" + CA_BUNDLE] + a.env,
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]},
        "history": [{"created_by": "tests/image/oci.py " + shlex.join(["--name", a.name, *(s.split(":")[1] for s in a.file)])}],
    }
    c = config["config"]
    if cfg.get("user"):
        c["User"] = cfg["user"]
    if cfg.get("entrypoint"):
        c["Entrypoint"] = cfg["entrypoint"]
    if cfg.get("cmd") is not None:
        c["Cmd"] = cfg["cmd"]
    if cfg["ports"]:
        c["ExposedPorts"] = {(port if "/" in port else port + "/tcp"): {} for port in cfg["ports"]}
    config_desc = blob(blobs, json.dumps(config, sort_keys=True).encode(),
                       "application/vnd.oci.image.config.v1+json")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": [layer_desc],
    }
    manifest_desc = blob(blobs, json.dumps(manifest, sort_keys=True).encode(),
                         "application/vnd.oci.image.manifest.v1+json")
    tag = a.name.rsplit(":", 1)[1] if ":" in a.name.rsplit("/", 1)[-1] else "latest"
    manifest_desc["annotations"] = {
        "io.containerd.image.name": a.name,
        "org.opencontainers.image.ref.name": tag,
    }
    manifest_desc["platform"] = {"architecture": "amd64", "os": "linux"}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [manifest_desc]}

    files = {"oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
             "index.json": json.dumps(index, sort_keys=True).encode()}
    for digest, data in blobs.items():
        files["blobs/sha256/" + digest.split(":", 1)[1]] = data
    tmp = a.out + ".tmp"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as t:
        for d in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            t.addfile(info)
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(files[name]), 0o644, 0
            t.addfile(info, io.BytesIO(files[name]))
    os.replace(tmp, a.out)
    print(manifest_desc["digest"])


if __name__ == "__main__":
    main()
