#!/usr/bin/env python3
"""Node footprint: time from `cnode run` to the API answering, and idle RSS.

Usage: bench/footprint.py [--bin target/release/cnode] [--peers 4] [--idle 60] [--runs 5]

Starts one node and measures, over --runs starts, the time from spawning
`cnode run` until GET /healthz answers 200 (goal <= 300 ms). Then starts
--peers more nodes bootstrapped to it, waits --idle seconds while they stay
connected, and prints the first node's RSS (goal <= 30 MB). Everything runs on
127.0.0.1 with mDNS off, in temporary data directories, and is stopped at the
end. Build first: cargo build --release --bin cnode
"""
import argparse, json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

def healthz(addr):
    host, port = addr.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1) as s:
            s.sendall(f"GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n".encode())
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False

def start(bin, data, extra=()):
    subprocess.run([bin, "--data", data, "init"], check=True, capture_output=True)
    t0 = time.perf_counter()
    p = subprocess.Popen([bin, "--data", data, "run", "--no-mdns", "--api", "127.0.0.1:0",
                          "--listen", "/ip4/127.0.0.1/tcp/0", "--listen", "/ip4/127.0.0.1/udp/0/quic-v1", *extra],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "CNODE_LOG": "warn"})
    deadline = t0 + 20
    while time.perf_counter() < deadline:
        try:
            addr = json.load(open(os.path.join(data, "api.json")))["addr"]
            if healthz(addr):
                return p, time.perf_counter() - t0
        except (OSError, ValueError, KeyError):
            pass
        if p.poll() is not None:
            sys.exit(f"cnode exited with {p.returncode}")
        time.sleep(0.001)
    p.kill()
    sys.exit("API did not answer within 20 s")

def status(bin, data):
    out = subprocess.run([bin, "--data", data, "status", "--json"], check=True, capture_output=True)
    return json.loads(out.stdout)

def rss_mb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release/cnode")
    ap.add_argument("--peers", type=int, default=4)
    ap.add_argument("--idle", type=float, default=60)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="cnode-footprint-")
    procs = []
    try:
        starts = []
        for i in range(a.runs):
            p, dt = start(a.bin, f"{tmp}/s{i}")
            starts.append(dt * 1000)
            p.send_signal(signal.SIGTERM); p.wait(timeout=10)
        med = statistics.median(starts)
        print(f"startup_to_api_ms median={med:.1f} min={min(starts):.1f} max={max(starts):.1f} runs={a.runs} goal<=300 {'PASS' if med <= 300 else 'FAIL'}")

        hub, _ = start(a.bin, f"{tmp}/hub"); procs.append(hub)
        addr = status(a.bin, f"{tmp}/hub")["listen_addrs"][0]
        for i in range(a.peers):
            p, _ = start(a.bin, f"{tmp}/p{i}", ["--bootstrap", addr]); procs.append(p)
        deadline = time.time() + 30
        while status(a.bin, f"{tmp}/hub")["connected_peers"] < a.peers:
            if time.time() > deadline:
                sys.exit("peers did not connect within 30 s")
            time.sleep(0.1)
        time.sleep(a.idle)
        connected = status(a.bin, f"{tmp}/hub")["connected_peers"]
        rss = rss_mb(hub.pid)
        print(f"idle_rss_mb={rss:.1f} peers={connected} idle_s={a.idle:.0f} goal<=30 {'PASS' if rss <= 30 else 'FAIL'}")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)

if __name__ == "__main__":
    main()
