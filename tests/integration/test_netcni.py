"""net-cni/ against Debian's real CNI plugins (containernetworking-plugins).

Drives tests/tools/cocoon-net (a thin C driver over the library) as root.
Everything lives in network namespaces, a bridge (ccbr<random>) and a
10.222.X.0/24 subnet the tests create; `ip`, `tc` and `iptables-save` are only
used to look, and (the bridge) to clean up.
"""
import json
import os
import pathlib
import random
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time

import pytest

SRCDIR = pathlib.Path(__file__).resolve().parents[2]
BUILDDIR = pathlib.Path(os.environ.get("COCOON_BUILDDIR", SRCDIR / "build"))
DRIVER = BUILDDIR / "tests" / "tools" / "cocoon-net"
CNI_BIN = "/usr/lib/cni"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
    pytest.mark.skipif(not os.path.exists(CNI_BIN + "/bridge"),
                       reason="containernetworking-plugins not installed"),
    pytest.mark.skipif(not DRIVER.exists(), reason="%s not built" % DRIVER),
]


def run(*args, check=True, timeout=60):
    p = subprocess.run([str(DRIVER)] + list(args), capture_output=True, text=True, timeout=timeout)
    try:
        out = json.loads(p.stdout.strip().splitlines()[-1]) if p.stdout.strip() else {}
    except ValueError:
        raise AssertionError("bad output from cocoon-net %s: %r %r" % (args[0], p.stdout, p.stderr))
    if check and p.returncode != 0:
        raise AssertionError("cocoon-net %s failed: %s" % (args[0], out.get("error", p.stderr)))
    return p.returncode, out


def sh(*args, check=True):
    return subprocess.run(list(args), capture_output=True, text=True, check=check).stdout


def ping(ip, timeout=2.0):
    """One ICMP echo from the host (raw socket; iputils-ping may be absent)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.settimeout(timeout)
    ident = random.randint(1, 0xffff)
    body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"cocoon-ping"
    csum = 0
    for i in range(0, len(body), 2):
        w = body[i] << 8 | (body[i + 1] if i + 1 < len(body) else 0)
        csum += w
    while csum >> 16:
        csum = (csum & 0xffff) + (csum >> 16)
    body = body[:2] + struct.pack("!H", ~csum & 0xffff) + body[4:]
    s.sendto(body, (ip, 0))
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            data, addr = s.recvfrom(2048)
            hl = (data[0] & 0xf) * 4
            typ, _, _, rid = struct.unpack("!BBHH", data[hl:hl + 6])
            if addr[0] == ip and typ == 0 and rid == ident:
                return True
    except socket.timeout:
        pass
    finally:
        s.close()
    return False


class Net:
    """A temporary CNI setup: conf dir, bin dir for fakes, cache, host-local data."""

    def __init__(self, tmp):
        self.tmp = pathlib.Path(tmp)
        self.tag = "%04x" % random.randint(0, 0xffff)
        self.bridge = "ccbr" + self.tag
        self.x = random.randint(1, 250)
        self.subnet = "10.222.%d.0/24" % self.x
        self.gateway = "10.222.%d.1" % self.x
        self.conf = self.tmp / "conf"
        self.bin = self.tmp / "bin"
        self.cache = self.tmp / "cache"
        self.data = self.tmp / "data"
        for d in (self.conf, self.bin, self.cache, self.data):
            d.mkdir()
        self.netns = []
        self.pods = []
        self.timeout_ms = 20000

    def write_conf(self, extra_plugins=(), portmap=True, version="1.0.0"):
        for f in self.conf.iterdir():
            f.unlink()
        plugins = [{
            "type": "bridge", "bridge": self.bridge, "isGateway": True, "ipMasq": False,
            "ipam": {"type": "host-local", "dataDir": str(self.data),
                     "ranges": [[{"subnet": self.subnet}]], "routes": [{"dst": "0.0.0.0/0"}]},
        }]
        if portmap:
            plugins.append({"type": "portmap", "capabilities": {"portMappings": True}})
        plugins.extend(extra_plugins)
        (self.conf / "10-cctest.conflist").write_text(json.dumps(
            {"cniVersion": version, "name": "cctest-" + self.tag, "plugins": plugins}))

    def fake_plugin(self, name, body):
        p = self.bin / name
        p.write_text("#!/bin/sh\ncat >/dev/null\n" + body + "\n")
        p.chmod(0o755)

    def common(self, netns, pod_id):
        return ["--conf-dir", str(self.conf), "--bin-dir", CNI_BIN, "--bin-dir", str(self.bin),
                "--cache-dir", str(self.cache), "--netns", netns, "--id", pod_id,
                "--pod-name", "pod-" + pod_id, "--pod-namespace", "default", "--pod-uid", "uid-" + pod_id,
                "--timeout-ms", str(self.timeout_ms)]

    def new_netns(self, suffix):
        name = "cctest-%s-%s" % (self.tag, suffix)
        _, out = run("netns-create", name)
        self.netns.append(out["path"])
        return out["path"], name

    def add(self, netns, pod_id, *extra, check=True):
        self.pods.append((netns, pod_id))
        return run("add", *(self.common(netns, pod_id) + list(extra)), check=check)

    def delete(self, netns, pod_id, check=True):
        return run("del", *self.common(netns, pod_id), check=check)

    def cleanup(self):
        for netns, pod_id in self.pods:
            if (self.conf / "10-cctest.conflist").exists():
                run("del", *self.common(netns, pod_id), check=False)
        for p in self.netns:
            run("netns-delete", p, check=False)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)

    def allocations(self):
        """host-local's per-IP reservation files (lock / last_reserved_ip are bookkeeping)."""
        d = self.data / ("cctest-" + self.tag)
        if not d.exists():
            return []
        return sorted(f.name for f in d.iterdir() if not f.name.startswith(("lock", "last_reserved_ip")))


@pytest.fixture
def net():
    tmp = tempfile.mkdtemp(prefix="cocoon-netcni-")
    n = Net(tmp)
    try:
        yield n
    finally:
        n.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def eth0_addr(nsname):
    out = sh("ip", "-n", nsname, "-o", "-4", "addr", "show", "dev", "eth0", check=False)
    return out.split()[3] if out.strip() else None


def test_netns_create_delete_idempotent(net):
    path, name = net.new_netns("ns")
    assert name in sh("ip", "netns", "list")
    # lo is up inside; nothing else exists.
    links = sh("ip", "-n", name, "-o", "link")
    assert "lo:" in links and "UP" in links.split("lo:")[1].split("\n")[0]
    assert len(links.strip().splitlines()) == 1
    rc, out = run("netns-create", name, check=False)
    assert rc == 1 and out["code"] == -17  # -EEXIST
    run("netns-delete", path)
    run("netns-delete", path)
    assert name not in sh("ip", "netns", "list")


def test_add_ping_check_del(net):
    net.write_conf()
    path, name = net.new_netns("p1")
    _, res = net.add(path, "pod1", "--port", "18%03d:80/tcp" % net.x)
    ip = [i for i in res["ips"] if i["family"] == 4][0]
    assert ip["address"].startswith("10.222.%d." % net.x)
    assert ip["gateway"] == net.gateway
    assert res["interfaces"][ip["interface"]]["sandbox"] == path
    assert eth0_addr(name) == ip["address"]
    assert ping(ip["address"].split("/")[0]), "host cannot ping the pod"
    assert "dnat name: \\\"cctest-%s\\\" id: \\\"pod1\\\"" % net.tag in sh("iptables-save", "-t", "nat")
    assert net.allocations() == [ip["address"].split("/")[0]]
    cache = list((net.cache / "results").iterdir())
    assert len(cache) == 1
    assert json.loads(cache[0].read_text())["result"]["ips"][0]["address"] == ip["address"]

    # DEL after the config file vanished: the cached config drives it.
    (net.conf / "10-cctest.conflist").rename(net.tmp / "saved.conflist")
    rc, out = net.delete(path, "pod1", check=False)
    assert rc == 1 and "no network config found in" in out["error"]
    (net.tmp / "saved.conflist").rename(net.conf / "10-cctest.conflist")
    net.delete(path, "pod1")
    assert eth0_addr(name) is None
    assert net.allocations() == []
    assert list((net.cache / "results").iterdir()) == []
    assert "id: \\\"pod1\\\"" not in sh("iptables-save", "-t", "nat")
    net.delete(path, "pod1")  # idempotent
    run("netns-delete", path)
    assert name not in sh("ip", "netns", "list")


def test_del_after_netns_gone(net):
    """StopPodSandbox may come after the namespace is gone: DEL still frees the IP."""
    net.write_conf()
    path, name = net.new_netns("g1")
    net.add(path, "podg")
    assert len(net.allocations()) == 1
    run("netns-delete", path)
    net.delete(path, "podg")
    assert net.allocations() == []
    assert list((net.cache / "results").iterdir()) == []


def test_netns_private_dir_and_refusal(net):
    """A netns_dir that is no mount point yet becomes a shared bind mount of
    itself; remove refuses to unlink what is not a namespace pin."""
    d = tempfile.mkdtemp(prefix="cocoon-netns-", dir="/run")
    try:
        _, out = run("netns-create", "--netns-dir", d, "x1")
        assert out["path"] == d + "/x1"
        mi = pathlib.Path("/proc/self/mountinfo").read_text().splitlines()
        dirs = [l for l in mi if l.split()[4] == d]
        assert dirs and "shared:" in dirs[-1]
        assert [l for l in mi if l.split()[4] == d + "/x1"]
        run("netns-delete", d + "/x1")
        assert not os.path.exists(d + "/x1")
        pathlib.Path(d, "notns").write_text("data")
        rc, out = run("netns-delete", d + "/notns", check=False)
        assert rc == 1 and "not a network namespace pin" in out["error"]
        assert os.path.exists(d + "/notns")
    finally:
        while subprocess.run(["umount", d], capture_output=True).returncode == 0:
            pass
        shutil.rmtree(d, ignore_errors=True)


def test_check(net):
    # portmap 1.1.1's CHECK wrongly fails for IPv4-only pods that have port
    # mappings (containernetworking/plugins#819); check a pod without them.
    net.write_conf()
    path, name = net.new_netns("c1")
    rc, out = run("check", *net.common(path, "podc"), check=False)
    assert rc == 1 and "no cached result" in out["error"]
    net.add(path, "podc")
    run("check", *net.common(path, "podc"))
    # Break what bridge set up: CHECK must notice.
    sh("ip", "-n", name, "addr", "flush", "dev", "eth0")
    rc, out = run("check", *net.common(path, "podc"), check=False)
    assert rc == 1 and "plugin bridge failed" in out["error"], out
    net.delete(path, "podc")


def test_missing_plugin(net):
    net.write_conf(extra_plugins=[{"type": "nosuchplugin"}])
    path, name = net.new_netns("m1")
    rc, out = net.add(path, "podm", check=False)
    assert rc == 1
    assert "plugin 'nosuchplugin' not found in %s:%s" % (CNI_BIN, net.bin) in out["error"]
    assert eth0_addr(name) is None
    assert net.allocations() == []


def test_failing_plugin_leaves_nothing(net):
    net.fake_plugin("failer", 'if [ "$CNI_COMMAND" = DEL ]; then exit 0; fi\n'
                    'echo \'{"cniVersion":"1.0.0","code":7,"msg":"boom","details":"bad stuff"}\'\nexit 1')
    net.write_conf(extra_plugins=[{"type": "failer"}])
    path, name = net.new_netns("f1")
    rc, out = net.add(path, "podf", check=False)
    assert rc == 1
    assert "plugin failer failed: boom: bad stuff" in out["error"]
    assert eth0_addr(name) is None
    assert "eth0" not in sh("ip", "-n", name, "-o", "link")
    assert net.allocations() == []
    assert not (net.cache / "results").exists() or list((net.cache / "results").iterdir()) == []
    assert sh("ip", "-o", "link", "show", "master", net.bridge, check=False).strip() == ""


def test_hanging_plugin_killed(net):
    marker = str(random.randint(4000, 9000))
    net.fake_plugin("hang", 'if [ "$CNI_COMMAND" = DEL ]; then exit 0; fi\nexec sleep ' + marker)
    net.write_conf(portmap=False, extra_plugins=[{"type": "hang"}])
    net.timeout_ms = 1000
    path, name = net.new_netns("h1")
    t0 = time.monotonic()
    rc, out = net.add(path, "podh", check=False)
    elapsed = time.monotonic() - t0
    assert rc == 1 and "plugin hang (ADD) killed: no reply within 1000 ms" in out["error"]
    assert elapsed < 10
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = pathlib.Path("/proc/%s/cmdline" % pid).read_bytes()
            except OSError:
                continue
            assert cmd != b"sleep\0" + marker.encode() + b"\0", "hung plugin still running"
    assert eth0_addr(name) is None
    assert net.allocations() == []


def snapshot(net):
    links = sorted(l.split(":")[1].strip().split("@")[0] for l in sh("ip", "-o", "link").splitlines())
    ipt = [l for l in sh("iptables-save").splitlines() if not l.startswith("#")]
    ipt = [l.split(" [")[0] if l.startswith(":") else l for l in ipt]
    return {"links": links, "netns": sorted(sh("ip", "netns", "list").splitlines()),
            "iptables": ipt, "alloc": net.allocations()}


def test_concurrent_add_del(net):
    net.write_conf()
    # Warm up once: the bridge and portmap's shared chains are created on first use.
    path, _ = net.new_netns("warm")
    net.add(path, "warm", "--port", "19%03d:80/tcp" % net.x)
    net.delete(path, "warm")
    run("netns-delete", path)
    before = snapshot(net)
    errors = []

    def one(i):
        try:
            name = "cctest-%s-c%d" % (net.tag, i)
            _, out = run("netns-create", name)
            p = out["path"]
            try:
                _, res = run("add", *(net.common(p, "conc%d" % i) + ["--port", "2%d%02d:80/tcp" % (net.x % 10, i)]))
                assert res["ips"], res
                run("del", *net.common(p, "conc%d" % i))
            finally:
                run("netns-delete", p)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append("%d: %s" % (i, e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert snapshot(net) == before


def test_tap_mirror(net):
    net.write_conf()
    path, name = net.new_netns("t1")
    _, res = net.add(path, "podt")
    addr = [i for i in res["ips"] if i["family"] == 4][0]["address"]
    _, info = run("tap-setup", "--netns", path)
    assert info["tap"] == "tap0_cocoon" and info["veth"] == "eth0"
    assert info["addrs"] == [addr]
    assert info["mac"] == res["interfaces"][[i["interface"] for i in res["ips"]][0]]["mac"]
    assert {"dst": "0.0.0.0/0", "gw": net.gateway} in info["routes"]
    veth_mtu = int(sh("ip", "netns", "exec", name, "cat", "/sys/class/net/eth0/mtu"))
    assert info["mtu"] == veth_mtu
    f_eth = sh("ip", "netns", "exec", name, "tc", "filter", "show", "dev", "eth0", "ingress")
    f_tap = sh("ip", "netns", "exec", name, "tc", "filter", "show", "dev", "tap0_cocoon", "ingress")
    assert "mirred (Egress Redirect to device tap0_cocoon)" in f_eth
    assert "mirred (Egress Redirect to device eth0)" in f_tap
    tun = sh("ip", "netns", "exec", name, "cat", "/sys/class/net/tap0_cocoon/tun_flags")
    flags = int(tun, 16)
    assert flags & 0x0002 and flags & 0x1000 and flags & 0x4000 and not flags & 0x0100  # TAP|NO_PI|VNET_HDR, !MULTI_QUEUE
    rc, out = run("tap-setup", "--netns", path, check=False)
    assert rc == 1 and out["code"] == -17

    # Frames written to the tap leave through eth0 and the gateway's replies
    # come back through the tap: ARP and an ICMP echo, both directions.
    _, probe = run("tap-probe", "--netns", path, "--gateway", net.gateway)
    bridge_mac = pathlib.Path("/sys/class/net/%s/address" % net.bridge).read_text().strip()
    assert probe["arp_reply_mac"] == bridge_mac
    assert probe["icmp_echo_reply"] is True

    run("tap-teardown", "--netns", path)
    assert "tap0_cocoon" not in sh("ip", "-n", name, "-o", "link")
    assert "ingress" not in sh("ip", "netns", "exec", name, "tc", "qdisc", "show", "dev", "eth0")
    assert sh("ip", "netns", "exec", name, "tc", "filter", "show", "dev", "eth0", "ingress").strip() == ""
    run("tap-teardown", "--netns", path)  # idempotent
    # The veth is untouched: the host still reaches the pod's stack.
    assert ping(addr.split("/")[0])
    net.delete(path, "podt")


def test_setup_time(net, capsys):
    """netns create + CNI ADD (bridge, host-local, portmap) + tap setup."""
    net.write_conf()
    _, out = run("bench", "--conf-dir", str(net.conf), "--bin-dir", CNI_BIN, "--cache-dir", str(net.cache),
                 "--netns-dir", "/run/netns", "--port", "17%03d:80/tcp" % net.x, "-n", "10", timeout=300)
    with capsys.disabled():
        print("\nnet-cni setup, median of 10: netns %.1f ms, ADD %.1f ms, tap %.1f ms, total %.1f ms"
              % (out["median_netns_ms"], out["median_add_ms"], out["median_tap_ms"], out["median_total_ms"]))
    assert len(out["runs"]) == 10
    assert net.allocations() == []
