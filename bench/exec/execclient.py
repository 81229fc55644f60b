"""bench/exec client: one pod with a `sleep 3600` container on the daemon at
TARGET, then
  - ExecSync of `true`, ROUNDS times (round trip, median/min/max);
  - Exec of `true` through the streaming URL with the SPDY/3.1 client of
    tests/integration/spdy_client.py (Exec RPC + upgrade + streams + exit
    status), ROUNDS times;
  - Exec of `head -c SIZE /dev/zero` over SPDY: stdout throughput (bytes
    counted, all zero checked), best of REPEAT.
Prints one RESULT line. The pod is removed at the end.

    execclient.py --stubs DIR --image IMAGE --logdir DIR [--rounds N]
                  [--size BYTES] [--repeat N] [--handler H] unix:///path.sock
"""
import argparse
import pathlib
import statistics
import sys
import time
import urllib.parse

HERE = pathlib.Path(__file__).resolve().parent
SRCDIR = HERE.parents[1]
sys.path.insert(0, str(SRCDIR / "bench" / "lib"))
sys.path.insert(0, str(SRCDIR / "tests" / "integration"))
import criclient as cc  # noqa: E402
import spdy_client as sc  # noqa: E402

V4 = "v4.channel.k8s.io"
SUCCESS = b'{"metadata":{},"status":"Success"}'


def spdy_exec(pb, rt, cid, cmd, sink=None, timeout=600):
    u = urllib.parse.urlparse(rt.Exec(pb.ExecRequest(container_id=cid, cmd=cmd, stdout=True),
                                      timeout=60).url)
    c = sc.SpdyConnection(u.hostname, u.port, u.path, [V4])
    try:
        err = c.open_stream([("streamtype", "error")])
        out = c.open_stream([("streamtype", "stdout")])
        if sink:
            out.sink = sink
        status = err.read_all(timeout)
        data = out.read_all(timeout)
    finally:
        c.close()
    if status != SUCCESS:
        sys.exit("execclient: %s: %r" % (cmd, status))
    return data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stubs", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--logdir", required=True)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--size", type=int, default=100_000_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--handler", default="")
    ap.add_argument("target")
    a = ap.parse_args()
    pb, rt, _ = cc.runtime(a.stubs, a.target)
    pod, cid, t = cc.start_pod(pb, rt, a.logdir, "execbench", a.image, a.handler)
    try:
        # warm-up (first exec pulls code paths and guest pages in)
        rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["true"], timeout=60), timeout=120)
        spdy_exec(pb, rt, cid, ["true"])
        sync = []
        for _ in range(a.rounds):
            t0 = time.monotonic()
            r = rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=["true"], timeout=60), timeout=120)
            sync.append(time.monotonic() - t0)
            if r.exit_code != 0:
                sys.exit("execclient: ExecSync true exited %d" % r.exit_code)
        stream = []
        for _ in range(a.rounds):
            t0 = time.monotonic()
            spdy_exec(pb, rt, cid, ["true"])
            stream.append(time.monotonic() - t0)
        best = 0.0
        for i in range(a.repeat):
            n = [0]
            bad = [False]

            def sink(b):
                n[0] += len(b)
                if b.count(0) != len(b):
                    bad[0] = True
            t0 = time.monotonic()
            spdy_exec(pb, rt, cid, ["head", "-c", str(a.size), "/dev/zero"], sink)
            dt = time.monotonic() - t0
            if n[0] != a.size or bad[0]:
                sys.exit("execclient: stdout: got %d bytes (want %d), corrupt=%s" % (n[0], a.size, bad[0]))
            mbs = a.size / dt / 1e6
            print("THROUGHPUT %d bytes %.2f s %.1f MB/s" % (a.size, dt, mbs), flush=True)
            best = max(best, mbs)
        print("RESULT sync_ms=%.1f sync_min_ms=%.1f sync_max_ms=%.1f stream_ms=%.1f stream_min_ms=%.1f "
              "stream_max_ms=%.1f mbs=%.1f" % (
                  statistics.median(sync) * 1e3, min(sync) * 1e3, max(sync) * 1e3,
                  statistics.median(stream) * 1e3, min(stream) * 1e3, max(stream) * 1e3, best))
    finally:
        try:
            cc.stop_pod(pb, rt, pod)
        except Exception as e:  # reported, but the figures above stand
            print("WARNING: removing the pod failed: %s" % e, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
