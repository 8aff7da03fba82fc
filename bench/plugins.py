#!/usr/bin/env python3
"""Plugins (issue 6): call latency, instantiation time and node RSS with 10 plugins.

Usage: bench/plugins.py [--bin target/release/cnode] [--calls 2000] [--plugins 10]
                        [--mix rust,js,mixed] [--json]

For each mix it starts a fresh `cnode run` (release build, 127.0.0.1, mDNS
off), installs --plugins plugins through the HTTP API, calls each, and reads:

- call latency p50/p99 of the Rust example (`events`) and the JS example
  (`board`), from the node's own per-plugin histogram (instance +
  `handle`, the figure the targets name: a fresh instance per Rust call, a
  warm one for JS calls after the first) and end to end over HTTP;
- the same HTTP round trip to a built-in endpoint (`GET /v1/status`), so the
  plugin path prints as a ratio of the native path;
- instantiation time p50/p99 (of the fresh instances only);
- load time from the compiled-code cache and from nothing (first install);
- the node's RSS (VmRSS, and its anonymous / file-backed parts) with all
  plugins installed and called once each, right after installing (compiled in
  the node), again after a restart (loaded from the cache) and after the
  latency runs; and once more after --idle-unload-secs without calls, when
  the node has unmapped the idle plugins' code (`[plugins] idle_unload_secs`).

The plugins are distinct: each copy of an example gets its own id. A Rust
copy also gets a custom section that changes its bytes, so every one is
compiled, cached and mapped separately, as 10 different Rust plugins would
be. A JavaScript copy gets its own script (the board's plus a line) on the
one shared engine, as 10 JavaScript plugins built with the same engine
(`plugins/js-engine`) would be: the node compiles and maps that engine once.

Mixes: `rust` = 10 Rust plugins, `js` = 10 JS plugins, `mixed` = 5 + 5.
Targets: Rust call p50 <= 50 us, JS call p50 <= 1 ms, 10 plugins <= 150 MB.
Build first: cargo build --release --bin cnode; scripts/build-plugins.
"""
import argparse, json, os, re, shutil, signal, statistics, subprocess, sys, tempfile, time
import http.client

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXAMPLES = {
    "rust": os.path.join(ROOT, "plugins/events/dist"),
    "js": os.path.join(ROOT, "plugins/board/dist"),
}
TARGET_RUST_P50_US = 50
TARGET_JS_P50_US = 1000
TARGET_RSS_MB = 150


class Node:
    def __init__(self, bin, data, idle_unload_secs):
        self.bin, self.data, self.p = bin, data, None
        self.idle_unload_secs = idle_unload_secs

    def start(self):
        config = os.path.join(self.data, "config.toml")
        if not os.path.exists(config):
            subprocess.run([self.bin, "--data", self.data, "init"], check=True, capture_output=True)
            text = open(config).read()
            text, n = re.subn(r"(?m)^idle_unload_secs = \d+$", f"idle_unload_secs = {self.idle_unload_secs}", text)
            if n != 1:
                sys.exit(f"{config} has no [plugins] idle_unload_secs: is {self.bin} older than this script?")
            open(config, "w").write(text)
        try:
            os.remove(os.path.join(self.data, "api.json"))
        except FileNotFoundError:
            pass
        self.p = subprocess.Popen(
            [self.bin, "--data", self.data, "run", "--no-mdns", "--api", "127.0.0.1:0",
             "--listen", "/ip4/127.0.0.1/tcp/0"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.data, "bench.log"), "ab"),
            env={**os.environ, "CNODE_LOG": os.environ.get("CNODE_LOG", "warn")})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                sys.exit(f"cnode exited with {self.p.returncode}; see {self.data}/bench.log")
            try:
                addr = json.load(open(os.path.join(self.data, "api.json")))["addr"]
                self.token = open(os.path.join(self.data, "api.token")).read().strip()
                host, port = addr.rsplit(":", 1)
                self.conn = http.client.HTTPConnection(host, int(port), timeout=600)
                if self.request("GET", "/healthz")[0] == 200:
                    return
            except (OSError, ValueError, KeyError, http.client.HTTPException):
                pass
            time.sleep(0.01)
        sys.exit("the node's API did not answer within 120 s")

    def request(self, method, path, body=None):
        headers = {"Authorization": f"Bearer {self.token}"}
        if body is not None:
            body = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=body, headers=headers)
        r = self.conn.getresponse()
        return r.status, r.read()

    def json(self, method, path, body=None, ok=(200, 201)):
        status, data = self.request(method, path, body)
        if status not in ok:
            sys.exit(f"{method} {path}: HTTP {status}: {data[:500]!r}")
        return json.loads(data) if data else None

    def stop(self):
        if self.p and self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()

    def memory_mb(self):
        out = {}
        for line in open(f"/proc/{self.p.pid}/status"):
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = int(rest.split()[0]) / 1024
        return out


def leb128(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def split_script(data):
    """(component without its `cnode:script` section, the script or None)."""
    at = 8
    while at < len(data):
        start, sid = at, data[at]
        at += 1
        size, shift = 0, 0
        while True:
            b = data[at]
            at += 1
            size |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        end = at + size
        if sid == 0:
            name_len, n = data[at], 1  # names here are shorter than 128 bytes
            if data[at + n:at + n + name_len] == b"cnode:script":
                return data[:start] + data[end:], data[at + n + name_len:end].decode()
        at = end
    return data, None


def custom_section(name, payload):
    body = leb128(len(name)) + name + payload
    return b"\x00" + leb128(len(body)) + body


def distinct_copy(src_dir, kind, i, dst_root):
    """A copy of an example with its own id and its own code or script."""
    wasm = next(f for f in os.listdir(src_dir) if f.endswith(".wasm"))
    manifest = open(os.path.join(src_dir, "plugin.toml")).read()
    new_id = f"org.cnode.bench.{kind}{i}"
    manifest, n = re.subn(r'^id = ".*"$', f'id = "{new_id}"', manifest, count=1, flags=re.M)
    assert n == 1, "no id line in the example's plugin.toml"
    dst = os.path.join(dst_root, new_id)
    os.makedirs(dst)
    open(os.path.join(dst, "plugin.toml"), "w").write(manifest)
    data = open(os.path.join(src_dir, wasm), "rb").read()
    code, script = split_script(data)
    if script is not None:
        # A script for the shared JavaScript engine: its own script (the
        # board's, with a line of its own), on the same engine as the others.
        script += f"\nexports.benchCopy = {i};\n"
        component = code + custom_section(b"cnode:script", script.encode())
    else:
        # A custom section at the end of the component: valid anywhere
        # between sections, ignored by the runtime, and it changes the code's
        # hash, so the copy is compiled, cached and mapped on its own.
        component = data + custom_section(b"cnode-bench", f"copy {i}".encode())
    open(os.path.join(dst, "component.wasm"), "wb").write(component)
    return new_id, dst


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def call_path(kind):
    return "/?region=w5q6" if kind == "rust" else "/notices?region=w5q6"


def run_mix(bin, mix, count, calls, work, idle_unload_secs):
    kinds = {"rust": ["rust"] * count, "js": ["js"] * count,
             "mixed": ["rust"] * (count - count // 2) + ["js"] * (count // 2)}[mix]
    data = os.path.join(work, f"node-{mix}")
    pkgs = os.path.join(work, f"pkgs-{mix}")
    os.makedirs(pkgs)
    plugins = [(kind, *distinct_copy(EXAMPLES[kind], kind, i, pkgs)) for i, kind in enumerate(kinds)]
    node = Node(bin, data, idle_unload_secs)
    node.start()
    res = {"mix": mix, "plugins": len(plugins), "n_rust": kinds.count("rust"), "n_js": kinds.count("js")}
    try:
        res["rss_empty_mb"] = node.memory_mb()["VmRSS"]
        first_load = {}
        for kind, pid, path in plugins:
            t0 = time.perf_counter()
            node.json("POST", "/v1/plugins", {"path": path, "grants": "all", "approve": True})
            first_load.setdefault(kind, []).append(time.perf_counter() - t0)
            print(f"  [{mix}] installed {pid} in {time.perf_counter() - t0:.2f} s", file=sys.stderr)
        for kind, pid, _ in plugins:
            status, _ = node.request("GET", f"/v1/services/{pid}{call_path(kind)}")
            assert status == 200, f"{pid}: HTTP {status}"
        res["install_s"] = {k: round(statistics.median(v), 3) for k, v in first_load.items()}
        res["rss_after_install_mb"] = node.memory_mb()

        node.stop()
        node.start()
        t0 = time.perf_counter()
        for kind, pid, _ in plugins:
            status, _ = node.request("GET", f"/v1/services/{pid}{call_path(kind)}")
            assert status == 200, f"{pid} after restart: HTTP {status}"
        res["restart_first_calls_s"] = round(time.perf_counter() - t0, 3)
        time.sleep(1)
        res["rss_restarted_mb"] = node.memory_mb()

        # Latency: the first plugin of each kind, `calls` calls over HTTP.
        for kind in ("rust", "js"):
            pid = next((p for k, p, _ in plugins if k == kind), None)
            if pid is None:
                continue
            before = node.json("GET", f"/v1/plugins/{pid}")["stats"]
            http_us = []
            for _ in range(calls):
                t0 = time.perf_counter()
                status, _ = node.request("GET", f"/v1/services/{pid}{call_path(kind)}")
                http_us.append((time.perf_counter() - t0) * 1e6)
                assert status == 200
            stats = node.json("GET", f"/v1/plugins/{pid}")["stats"]
            assert stats["calls"] - before["calls"] == calls, "the node did not count every call"
            native_us = []
            for _ in range(calls):
                t0 = time.perf_counter()
                status, _ = node.request("GET", "/v1/status")
                native_us.append((time.perf_counter() - t0) * 1e6)
                assert status == 200
            res[kind] = {
                "host_p50_us": stats["latency"]["p50_us"], "host_p99_us": stats["latency"]["p99_us"],
                "instantiate_p50_us": stats["instantiate"]["p50_us"],
                "instantiate_p99_us": stats["instantiate"]["p99_us"],
                "http_p50_us": round(pct(http_us, 0.5)), "http_p99_us": round(pct(http_us, 0.99)),
                "native_http_p50_us": round(pct(native_us, 0.5)),
                "http_ratio_vs_native": round(pct(http_us, 0.5) / pct(native_us, 0.5), 2),
            }
        res["rss_after_calls_mb"] = node.memory_mb()
        # The node checks for idle plugins every 10 s.
        time.sleep(idle_unload_secs + 12)
        res["rss_idle_mb"] = node.memory_mb()
        t0 = time.perf_counter()
        kind, pid, _ = plugins[-1]
        status, _ = node.request("GET", f"/v1/services/{pid}{call_path(kind)}")
        assert status == 200, f"{pid} after idling: HTTP {status}"
        res["first_call_after_idle_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    finally:
        node.stop()
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.environ.get("CNODE_BIN", "target/release/cnode"))
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--plugins", type=int, default=10)
    ap.add_argument("--mix", default="rust,js,mixed")
    ap.add_argument("--idle-unload-secs", type=int, default=20,
                    help="the node's [plugins] idle_unload_secs for the run (default 20)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = ap.parse_args()
    if not 1 <= a.plugins <= 50 or not 1 <= a.calls <= 100_000:
        sys.exit("--plugins must be 1..50 and --calls 1..100000")
    for kind, d in EXAMPLES.items():
        if not os.path.isdir(d) or not any(f.endswith(".wasm") for f in os.listdir(d)):
            sys.exit(f"{d} has no component: run scripts/build-plugins first")
    if not os.access(a.bin, os.X_OK):
        sys.exit(f"{a.bin} is not an executable: cargo build --release --bin cnode (or --bin PATH)")

    work = tempfile.mkdtemp(prefix="cnode-bench-plugins-")
    results = []
    try:
        for mix in a.mix.split(","):
            results.append(run_mix(a.bin, mix, a.plugins, a.calls, work, a.idle_unload_secs))
    finally:
        if a.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    if a.json:
        print(json.dumps(results, indent=2))
        return
    verdict = lambda ok: "PASS" if ok else "FAIL"
    for r in results:
        for kind, target in (("rust", TARGET_RUST_P50_US), ("js", TARGET_JS_P50_US)):
            if isinstance(r.get(kind), dict):
                k = r[kind]
                print(f"plugins mix={r['mix']} {kind} call_p50_us={k['host_p50_us']} call_p99_us={k['host_p99_us']} "
                      f"instantiate_p50_us={k['instantiate_p50_us']} instantiate_p99_us={k['instantiate_p99_us']} "
                      f"http_p50_us={k['http_p50_us']} http_p99_us={k['http_p99_us']} "
                      f"native_http_p50_us={k['native_http_p50_us']} ratio_vs_native={k['http_ratio_vs_native']} "
                      f"target_p50<={target} {verdict(k['host_p50_us'] <= target)}")
        after, restarted = r["rss_after_install_mb"], r["rss_restarted_mb"]
        print(f"plugins mix={r['mix']} loaded={r['plugins']} (rust {r['n_rust']}, js {r['n_js']}) "
              f"install_s={r['install_s']} rss_empty_mb={r['rss_empty_mb']:.1f} "
              f"rss_after_install_mb={after['VmRSS']:.1f} (anon {after['RssAnon']:.1f}, file {after['RssFile']:.1f}) "
              f"rss_restarted_mb={restarted['VmRSS']:.1f} (anon {restarted['RssAnon']:.1f}, file {restarted['RssFile']:.1f}) "
              f"rss_after_calls_mb={r['rss_after_calls_mb']['VmRSS']:.1f} target<={TARGET_RSS_MB} "
              f"{verdict(max(after['VmRSS'], r['rss_after_calls_mb']['VmRSS']) <= TARGET_RSS_MB)}")
        idle = r["rss_idle_mb"]
        print(f"plugins mix={r['mix']} idle_after_s={a.idle_unload_secs} rss_idle_mb={idle['VmRSS']:.1f} "
              f"(anon {idle['RssAnon']:.1f}, file {idle['RssFile']:.1f}) "
              f"first_call_after_idle_ms={r['first_call_after_idle_ms']} target<={TARGET_RSS_MB} "
              f"{verdict(idle['VmRSS'] <= TARGET_RSS_MB)}")


if __name__ == "__main__":
    main()
