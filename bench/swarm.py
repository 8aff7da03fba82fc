#!/usr/bin/env python3
"""Side-by-side transfer benchmark: cnode against BitTorrent (aria2 + opentracker)
and iroh's sendme, in the same run on this machine, alternating.

Usage:
  bench/swarm.py swarm [--size-mib 1024] [--leechers 4] [--runs 3]
  bench/swarm.py one   [--size-mib 256] [--runs 3]
  bench/swarm.py ceiling

  swarm    1 seeder -> N leechers, one file. cnode: a seeder node holding the
           file; N leecher nodes started at t0, each bootstrapped to the seeder
           only (they find each other through the DHT provider records), each
           asked to download; t1 = every leecher has the whole file verified.
           Peer: ../shared/bench/bt_swarm.sh (same size, same N). Prints both
           times per run, the median ratio cnode/BitTorrent, and the leechers'
           peak RSS (VmHWM). Targets: ratio <= 1.0, peak RSS <= 64 MB.
  one      1 -> 1: `cnode get CID -o FILE` (a node started for the download,
           connect, transfer, BLAKE3-verified, export) against
           ../shared/bench/sendme.sh (receive process wall time incl. export).
           Targets: throughput >= 1.0 x sendme and >= 40 % of the CPU ceiling.
           Reference, same run: bench/pipeline (built on first use), the same
           AES-GCM, TCP, BLAKE3 and write+fsync work with no protocol around
           it, with page-cache writes and with O_DIRECT (as the node writes
           whole pieces), and with the glibc memcpy setting cnode uses on AMD
           CPUs; its fraction of the ceiling is what this machine allows a
           program that does nothing else.
  ceiling  the CPU ceiling for an encrypted, verified transfer on this machine:
           2 cores / (1/chacha20 + 1/chacha20 + 1/blake3) from
           ../shared/bench/loopback_ceiling.sh.

Build first: cargo build --release --bin cnode. Needs aria2c, opentracker,
mktorrent, iperf3 (apt), sendme and b3sum (cargo install): `bench/setup` installs
them all, idempotently. Root for sendme's netns.
Everything runs on 127.0.0.1 in temporary directories and is stopped at the end.
"""
import argparse, json, os, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, threading, time, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "bench"))
BIN = os.environ.get("CNODE_BIN", os.path.join(HERE, "..", "target", "release", "cnode"))
CEILING_CACHE = {}
TOOLS = os.environ.get("CNODE_BENCH_TOOLS", os.path.expanduser("~/.cache/cnode/bench-tools"))


def tool(name):
    """`name` from bench/setup's install root, else PATH (None if neither)."""
    for cand in [os.path.join(TOOLS, "bin", name), shutil.which(name) or ""]:
        if cand and os.path.exists(cand):
            return cand
    return None
PIPELINE_BUILT = []  # built once per run of this script


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def make_file(path, size_mib):
    with open(path, "wb") as f:
        for _ in range(size_mib):
            f.write(os.urandom(1 << 20))


class Node:
    def __init__(self, root, name, extra=()):
        self.data = os.path.join(root, name)
        subprocess.run([BIN, "--data", self.data, "init"], check=True, capture_output=True)
        self.proc = subprocess.Popen(
            [BIN, "--data", self.data, "run", "--no-mdns", "--api", "127.0.0.1:0",
             "--listen", os.environ.get("CNODE_BENCH_LISTEN", "/ip4/127.0.0.1/tcp/0"), *extra],
            stdout=subprocess.DEVNULL, stderr=open(self.data + ".log", "w"),
            env={**os.environ, "CNODE_LOG": os.environ.get("CNODE_LOG", "warn")})
        deadline = time.time() + 20
        while True:
            try:
                self.addr = json.load(open(os.path.join(self.data, "api.json")))["addr"]
                self.token = open(os.path.join(self.data, "api.token")).read().strip()
                if self.call("GET", "/healthz", auth=False):
                    break
            except (OSError, ValueError, KeyError):
                pass
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"node {name} did not start")
            time.sleep(0.005)

    def call(self, method, path, body=None, auth=True, timeout=3600):
        req = urllib.request.Request(f"http://{self.addr}{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode())
        if auth:
            req.add_header("Authorization", f"Bearer {self.token}")
        if body is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=timeout) as r:
            text = r.read()
            return json.loads(text) if text and text[:1] in b"{[" else text

    def peak_rss_mb(self):
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def cnode_swarm(size_mib, leechers, src):
    root = tempfile.mkdtemp(prefix="cnode-bench-")
    nodes = []
    try:
        seeder = Node(root, "seeder"); nodes.append(seeder)
        cid = seeder.call("POST", "/v1/blobs/import", {"path": src})["cid"]
        addr = seeder.call("GET", "/v1/status")["listen_addrs"][0]
        t0 = time.perf_counter()
        ls = [Node(root, f"l{i}", ["--bootstrap", addr]) for i in range(leechers)]
        nodes += ls
        results, errors = {}, []

        def fetch(n):
            try:
                results[n.data] = n.call("POST", f"/v1/blobs/{cid}/download", {"wait": True})
            except Exception as e:  # noqa: BLE001
                errors.append(f"{n.data}: {e}")

        threads = [threading.Thread(target=fetch, args=(n,)) for n in ls]
        for t in threads: t.start()
        for t in threads: t.join()
        t1 = time.perf_counter()
        if errors:
            raise RuntimeError("; ".join(errors))
        for n in ls:
            st = n.call("GET", f"/v1/blobs/{cid}/status")
            assert st["info"]["complete"] and st["info"]["size"] == size_mib << 20, st
        seeder_id = seeder.call("GET", "/v1/status")["peer_id"]
        from_peers = sum(c for r in results.values() for p, c in r["pieces_from"].items() if p != seeder_id)
        total = sum(c for r in results.values() for c in r["pieces_from"].values())
        rss = max(n.peak_rss_mb() for n in ls)
        return t1 - t0, rss, from_peers / max(total, 1)
    finally:
        for n in nodes: n.stop()
        shutil.rmtree(root, ignore_errors=True)


def bt_swarm(size_mib, leechers):
    out = subprocess.run(["bash", os.path.join(SHARED, "bt_swarm.sh"), str(size_mib), str(leechers)],
                         capture_output=True, text=True, timeout=1800)
    m = re.search(r"seconds=([0-9.]+)", out.stdout)
    if not m:
        raise RuntimeError("bt_swarm.sh failed: " + out.stderr[-2000:])
    return float(m.group(1))


def cnode_one(size_mib, src):
    root = tempfile.mkdtemp(prefix="cnode-bench-")
    seeder = None
    try:
        seeder = Node(root, "seeder")
        cid = seeder.call("POST", "/v1/blobs/import", {"path": src})["cid"]
        addr = seeder.call("GET", "/v1/status")["listen_addrs"][0]
        leech = os.path.join(root, "leech")
        subprocess.run([BIN, "--data", leech, "init"], check=True, capture_output=True)
        out = os.path.join(root, "data.bin")
        t0 = time.perf_counter()
        subprocess.run([BIN, "--data", leech, "get", cid, "-o", out, "--peer", addr, "--json"],
                       check=True, capture_output=True, env={**os.environ, "CNODE_LOG": "warn"})
        dt = time.perf_counter() - t0
        assert os.path.getsize(out) == size_mib << 20
        return dt
    finally:
        if seeder: seeder.stop()
        shutil.rmtree(root, ignore_errors=True)


PIPELINE_DIR = os.path.join(HERE, "pipeline")
PIPELINE_TARGET = os.path.join(os.path.expanduser("~"), ".cache", "cnode-bench-pipeline")


def pipeline_env():
    """The glibc setting cnode gives itself on AMD CPUs (crates/cnode-cli/src/tune.rs),
    so that the reference program copies memory the same way."""
    env = dict(os.environ)
    try:
        amd = "AuthenticAMD" in open("/proc/cpuinfo").read()
    except OSError:
        amd = False
    if amd and "x86_rep_movsb_threshold" not in env.get("GLIBC_TUNABLES", ""):
        t = "glibc.cpu.x86_rep_movsb_threshold=1073741824"
        env["GLIBC_TUNABLES"] = f"{env['GLIBC_TUNABLES']}:{t}" if env.get("GLIBC_TUNABLES") else t
    return env


def bare_pipeline_one(size_mib, src, direct=False):
    """The reference program in bench/pipeline (built once): the same crypto,
    hashing, TCP and disk work as a transfer, with no protocol around it."""
    exe = os.path.join(PIPELINE_TARGET, "release", "bare-pipeline")
    if not PIPELINE_BUILT:
        subprocess.run(["cargo", "build", "--release", "-q", "--manifest-path",
                        os.path.join(PIPELINE_DIR, "Cargo.toml")], check=True,
                       env={**os.environ, "CARGO_TARGET_DIR": PIPELINE_TARGET})
        PIPELINE_BUILT.append(True)
    tmp = tempfile.mkdtemp(prefix="cnode-bench-pipe-")
    try:
        out = subprocess.run([exe, *(["--direct"] if direct else []), src, os.path.join(tmp, "out.bin")], check=True,
                             capture_output=True, text=True, timeout=600, env=pipeline_env()).stdout
        return float(re.search(r"seconds=([0-9.]+)", out).group(1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def sendme_one(size_mib):
    env = dict(os.environ)
    if tool("sendme"):
        env["SENDME"] = tool("sendme")
    out = subprocess.run(["bash", os.path.join(SHARED, "sendme.sh"), str(size_mib)],
                         capture_output=True, text=True, timeout=1200, env=env)
    m = re.search(r"seconds=([0-9.]+)", out.stdout)
    if not m:
        raise RuntimeError("sendme.sh failed: " + out.stderr[-2000:])
    return float(m.group(1))


def ceiling():
    if CEILING_CACHE:
        return CEILING_CACHE["v"]
    env = dict(os.environ)
    if tool("b3sum"):
        env["B3SUM"] = tool("b3sum")
    env.setdefault("IPERF_SECONDS", "3")
    out = subprocess.run(["bash", os.path.join(SHARED, "loopback_ceiling.sh")], capture_output=True, text=True,
                         timeout=600, env=env).stdout
    vals = dict(re.findall(r"(\w+)=([0-9.]+)", out))
    chacha = float(vals["openssl_chacha20_poly1305_mb_per_s"])
    b3 = float(vals["blake3_1thread_mb_per_s"])
    ceil = 2 / (1 / chacha + 1 / chacha + 1 / b3)
    log(f"ceiling inputs: {vals}")
    CEILING_CACHE["v"] = (ceil, vals)
    return ceil, vals


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["swarm", "one", "ceiling"])
    ap.add_argument("--size-mib", type=int, default=None)
    ap.add_argument("--leechers", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    if a.mode == "ceiling":
        c, vals = ceiling()
        print(f"ceiling_mb_per_s={c:.0f} chacha20_mb_per_s={vals['openssl_chacha20_poly1305_mb_per_s']} "
              f"blake3_1thread_mb_per_s={vals['blake3_1thread_mb_per_s']}")
        return
    size = a.size_mib or (1024 if a.mode == "swarm" else 256)
    tmp = tempfile.mkdtemp(prefix="cnode-bench-src-")
    try:
        src = os.path.join(tmp, "payload.bin")
        make_file(src, size)
        if a.mode == "swarm":
            ratios, rows, rss_all = [], [], []
            for i in range(a.runs):
                bt = bt_swarm(size, a.leechers)
                cn, rss, shared = cnode_swarm(size, a.leechers, src)
                ratios.append(cn / bt); rss_all.append(rss)
                rows.append((cn, bt))
                print(f"run {i+1}: cnode {cn:.2f} s  bittorrent {bt:.2f} s  ratio {cn/bt:.2f}  "
                      f"leecher peak RSS {rss:.1f} MB  pieces from other leechers {shared*100:.0f}%", flush=True)
            med = statistics.median(ratios)
            print(f"swarm size_mib={size} leechers={a.leechers} runs={a.runs} "
                  f"cnode_median_s={statistics.median(r[0] for r in rows):.2f} "
                  f"bittorrent_median_s={statistics.median(r[1] for r in rows):.2f} "
                  f"median_ratio={med:.2f} target<=1.0 {'PASS' if med <= 1.0 else 'FAIL'} "
                  f"peak_rss_mb={max(rss_all):.1f} target<=64 {'PASS' if max(rss_all) <= 64 else 'FAIL'}")
        else:
            c, _ = ceiling()
            ratios, tputs, bares, directs = [], [], [], []
            for i in range(a.runs):
                sm = sendme_one(size)
                cn = cnode_one(size, src)
                bare = size * 1.048576 / bare_pipeline_one(size, src)
                direct = size * 1.048576 / bare_pipeline_one(size, src, direct=True)
                tput = size * 1.048576 / cn
                ratios.append(sm / cn); tputs.append(tput); bares.append(bare); directs.append(direct)
                print(f"run {i+1}: cnode {cn:.2f} s ({tput:.0f} MB/s)  sendme {sm:.2f} s ({size*1.048576/sm:.0f} MB/s)  "
                      f"cnode/sendme throughput {sm/cn:.2f}  bare pipeline {bare:.0f} MB/s (O_DIRECT {direct:.0f})",
                      flush=True)
            med = statistics.median(ratios)
            frac = statistics.median(tputs) / c
            bare = statistics.median(bares)
            print(f"one size_mib={size} runs={a.runs} cnode_mb_per_s={statistics.median(tputs):.0f} "
                  f"throughput_ratio_vs_sendme={med:.2f} target>=1.0 {'PASS' if med >= 1.0 else 'FAIL'} "
                  f"ceiling_mb_per_s={c:.0f} fraction_of_ceiling={frac:.2f} target>=0.40 {'PASS' if frac >= 0.4 else 'FAIL'} "
                  f"bare_pipeline_mb_per_s={bare:.0f} bare_fraction_of_ceiling={bare / c:.2f} "
                  f"cnode_vs_bare={statistics.median(tputs) / bare:.2f} "
                  f"bare_direct_fraction_of_ceiling={statistics.median(directs) / c:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
