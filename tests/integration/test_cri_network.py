"""Pod networking end to end through the CRI socket (issue 6): real VMs (TCG
here), the build's cocoon-agent in the guest, and Debian's CNI plugins
(bridge + host-local + portmap + loopback from /usr/lib/cni).

Each daemon gets a conflist this module writes: a bridge of its own
(cni-ct<hex>), a 10.226.X.0/24 + fd0c:cc:X::/64 dual-stack subnet that is
never routed off the machine (ipMasq false), host-local's store in a temp
dataDir so allocations can be inspected, and a spy in front of the bridge
plugin (a first bin_dir holding a "bridge" script that logs each call and
execs the real one) so CNI calls can be counted.

Host state is compared only where this module owns it (other tests may run
on the machine at the same time): links enslaved to our bridge, our netns
dir, iptables lines naming our network/bridge/subnet plus the chains they
jump to, host-local's reservations, the CNI result cache.

    COCOON_BUILDDIR=/path/to/build /usr/bin/python3 -m pytest -v tests/integration/test_cri_network.py
"""
import ipaddress
import json
import os
import pathlib
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
import uuid

import grpc
import pytest

from conftest import BUILDDIR, pb
from oci_layout import layer_tar, write_layout
from pods import (CONTAINER, NODE, POD, PodEnv, busybox_rootfs_layer, pid_alive, procs_mentioning,  # noqa: F401
                  skip_reason, wait_until)

CNI_BIN = "/usr/lib/cni"
NETWORK = "cocoon-ctest"


def _skip():
    r = skip_reason()
    if r:
        return r
    for p in ("bridge", "host-local", "portmap", "loopback"):
        if not os.access(os.path.join(CNI_BIN, p), os.X_OK):
            return "%s/%s missing (containernetworking-plugins)" % (CNI_BIN, p)
    for t in ("iptables-save", "ip"):
        if subprocess.run(["which", t], capture_output=True).returncode:
            return "%s missing" % t
    return None


pytestmark = pytest.mark.skipif(_skip() is not None, reason=_skip() or "")

READY = pb.SANDBOX_READY
C_RUNNING = pb.CONTAINER_RUNNING


def sh(*args, check=True):
    return subprocess.run(list(args), capture_output=True, text=True, check=check).stdout


# A plugin that logs every call (command, container id) and execs the real
# bridge plugin: bin_dirs puts its directory first.
SPY = """#!/bin/sh
echo "$CNI_COMMAND $CNI_CONTAINERID" >> %(log)s
exec %(bin)s/bridge "$@"
"""
# A plugin that fails ADD with a CNI error (DEL and CHECK succeed).
FAIL = """#!/bin/sh
cat >/dev/null
case "$CNI_COMMAND" in
ADD) echo '{"cniVersion":"1.0.0","code":999,"msg":"cc-fail refuses the pod","details":"test-detail-7341"}'; exit 1;;
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0"]}';;
esac
exit 0
"""
# A plugin whose ADD never answers.
HANG = """#!/bin/sh
cat >/dev/null
case "$CNI_COMMAND" in
ADD) exec /bin/sleep 3599;;
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0"]}';;
esac
exit 0
"""


class NetEnv(PodEnv):
    """PodEnv with this module's CNI configuration: [cni] bin_dirs (spy dir
    first) and plugin_timeout, a dual-stack bridge + portmap + loopback
    conflist (written as PodEnv's file name, so PodEnv.close() removes our
    bridge)."""

    @staticmethod
    def config(tmp, vm_extra="", runtime_extra="", kernel=None, initrd=None, agent_timeout=120,
               plugin_timeout=60, with_conf=True):
        from pods import ACCEL
        from test_agent_guest import guest_images
        tmp = pathlib.Path(tmp)
        vmlinux, initrd_img = guest_images(BUILDDIR)
        for d in ("cni-conf", "netns", "cni-cache", "cni-bin", "ipam"):
            (tmp / d).mkdir(exist_ok=True)
        x = os.urandom(1)[0]
        tag = "%02x%02x" % (x, os.urandom(1)[0])
        (tmp / "cni-bin" / "bridge").write_text(SPY % {"log": tmp / "cni-calls.log", "bin": CNI_BIN})
        (tmp / "cni-bin" / "cc-fail").write_text(FAIL)
        (tmp / "cni-bin" / "cc-hang").write_text(HANG)
        for f in ("bridge", "cc-fail", "cc-hang"):
            (tmp / "cni-bin" / f).chmod(0o755)
        net = {"cniVersion": "1.0.0", "name": NETWORK, "plugins": [
            {"type": "bridge", "bridge": "cni-ct" + tag, "isGateway": True, "ipMasq": False,
             "ipam": {"type": "host-local", "dataDir": str(tmp / "ipam"),
                      "ranges": [[{"subnet": "10.226.%d.0/24" % x}], [{"subnet": "fd0c:cc:%x::/64" % x}]],
                      "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "loopback"}]}
        (tmp / "network.json").write_text(json.dumps(net))
        if with_conf:
            (tmp / "cni-conf" / "10-cocoon-test.conflist").write_text(json.dumps(net))
        return ('[runtime]\nhost_agent = "%s"\n%s'
                '[vm]\nkernel = "%s"\ninitrd = "%s"\naccel = "%s"\nagent_timeout = %d\n%s'
                '[cni]\nconf_dir = "%s"\nnetns_dir = "%s"\ncache_dir = "%s"\nbin_dirs = ["%s", "%s"]\n'
                'plugin_timeout = %d\n'
                % (BUILDDIR / "agent" / "cocoon-agent", runtime_extra, kernel or vmlinux, initrd or initrd_img,
                   ACCEL, agent_timeout, vm_extra, tmp / "cni-conf", tmp / "netns", tmp / "cni-cache",
                   tmp / "cni-bin", CNI_BIN, plugin_timeout))

    def __init__(self, tmp, daemon, image_id):
        super().__init__(tmp, daemon, image_id)
        self.net = json.loads((self.tmp / "network.json").read_text())
        self.network = self.net      # PodEnv.close() deletes plugins[0].bridge
        self.bridge = self.net["plugins"][0]["bridge"]
        r = self.net["plugins"][0]["ipam"]["ranges"]
        self.subnet4 = ipaddress.ip_network(r[0][0]["subnet"])
        self.subnet6 = ipaddress.ip_network(r[1][0]["subnet"])

    # -- configuration

    def write_conf(self, plugins=None, name=None):
        """Replaces the conf dir's content (atomically: the daemon re-reads
        it when it changes); plugins=None restores the module's network."""
        net = dict(self.net)
        if plugins is not None:
            net["plugins"] = plugins
        if name:
            net["name"] = name
        conf = self.tmp / "cni-conf"
        for f in conf.iterdir():
            f.unlink()
        tmpf = self.tmp / "conf.tmp"
        tmpf.write_text(json.dumps(net))
        os.rename(tmpf, conf / "10-cocoon-test.conflist")

    def clear_conf(self):
        for f in (self.tmp / "cni-conf").iterdir():
            f.unlink()

    def network_condition(self):
        st = self.rt.Status(pb.StatusRequest(), timeout=30).status
        return {c.type: c for c in st.conditions}["NetworkReady"]

    def wait_network_ready(self, want):
        return wait_until(lambda: (lambda c: c if c.status == want else None)(self.network_condition()), 15,
                          "NetworkReady=%s" % want)

    # -- pods

    def net_pod_config(self, name, dns=None, ports=(), network=POD, hostname=None):
        cfg = self.pod_config(name, network=network, hostname=hostname)
        if dns:
            cfg.dns_config.CopyFrom(pb.DNSConfig(**dns))
        for cport, hport in ports:
            cfg.port_mappings.add(protocol=pb.TCP, container_port=cport, host_port=hport)
        return cfg

    def run_cfg(self, cfg):
        return self.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg), timeout=180).pod_sandbox_id

    def exec_sync(self, cid, cmd, timeout=30):
        r = self.rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=cmd, timeout=timeout), timeout=timeout + 30)
        return r.exit_code, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")

    def cni_calls(self):
        try:
            return [l.split() for l in (self.tmp / "cni-calls.log").read_text().splitlines()]
        except FileNotFoundError:
            return []

    # -- host state this daemon's network can touch

    def snapshot(self, ids=()):
        links = sorted(l.split(":")[1].strip().split("@")[0]
                       for l in sh("ip", "-o", "link", "show", "master", self.bridge, check=False).splitlines())
        ipt = []
        for tool in ("iptables-save", "ip6tables-save"):
            lines = [l for l in sh(tool, check=False).splitlines() if not l.startswith("#")]
            ipt += [tool[:3] + " " + (l.split(" [")[0] if l.startswith(":") else l) for l in lines]
        s4 = str(self.subnet4.network_address).rsplit(".", 1)[0] + "."
        keys = [NETWORK, self.bridge, s4, str(self.subnet6.network_address).rstrip(":")] + list(ids)
        mine = {l for l in ipt if any(k in l for k in keys)}
        chains = {w for l in mine for w in l.split()
                  if w.startswith("CNI-") and w not in ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK",
                                                        "CNI-HOSTPORT-MASQ", "CNI-FORWARD", "CNI-ADMIN")}
        mine |= {l for l in ipt if any(c in l.split() for c in chains)}
        alloc_dir = self.tmp / "ipam" / NETWORK
        allocs = sorted(f.name for f in alloc_dir.iterdir()
                        if not f.name.startswith(("lock", "last_reserved_ip"))) if alloc_dir.is_dir() else []
        cache = sorted(str(p.relative_to(self.tmp)) for p in (self.tmp / "cni-cache").rglob("*") if p.is_file())
        netns = sorted(os.listdir(self.tmp / "netns"))
        return {"links": links, "iptables": sorted(mine), "allocations": allocs, "cache": cache, "netns": netns}


def _close(env):
    env.close()
    keep = os.environ.get("COCOON_TEST_KEEP_LOGS")
    if keep:
        pathlib.Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(env.daemon.log, pathlib.Path(keep) / ("cocoond-%s.log" % env.tmp.name))
    env.cleanup_dirs()


@pytest.fixture(scope="module")
def net_env():
    r = _skip()
    if r:
        pytest.skip(r)
    env = NetEnv.start_env()
    yield env
    _close(env)


@pytest.fixture(scope="module")
def fail_env():
    """A second daemon, no CNI config at start, short plugin timeout."""
    r = _skip()
    if r:
        pytest.skip(r)
    env = NetEnv.start_env(plugin_timeout=3, with_conf=False)
    yield env
    _close(env)


def free_port():
    s = socket.socket()
    s.bind(("0.0.0.0", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def fetch(url, timeout=3):
    try:
        return urllib.request.urlopen(url, timeout=timeout).read().decode()
    except OSError:
        return None


def host_addresses():
    out = set()
    for l in sh("ip", "-o", "addr", "show").splitlines():
        f = l.split()
        out.add(f[3].split("/")[0])
    return out


HTTPD = "mkdir -p /www && echo hello-from-%s > /www/index.html && exec /bin/busybox httpd -f -p 8080 -h /www"

DNS = {"servers": ["10.96.0.10", "fd00:96::a"], "searches": ["ns1.svc.cluster.local", "svc.cluster.local",
                                                             "cluster.local"], "options": ["ndots:5", "timeout:2"]}


# ---- the serving pod ---------------------------------------------------------

def test_http_pod_reached_from_host_hostport_and_second_pod(net_env):
    env = net_env
    calls0 = len(env.cni_calls())
    hport = free_port()
    cfg = env.net_pod_config("web", dns=DNS, ports=[(8080, hport)], hostname="web-0")
    t0 = time.monotonic()
    web = env.run_cfg(cfg)
    t_run = time.monotonic() - t0
    client = None
    try:
        st = env.pod_status(web).status
        assert st.state == READY
        # PodSandboxStatus: IPv4 first, the IPv6 address as the additional IP.
        ip = ipaddress.ip_address(st.network.ip)
        assert ip in env.subnet4, (st.network.ip, env.subnet4)
        extra = [ipaddress.ip_address(x.ip) for x in st.network.additional_ips]
        assert len(extra) == 1 and extra[0] in env.subnet6, (extra, env.subnet6)
        info = env.pod_info(web)
        assert info["netns"] and os.path.exists(info["netns"])
        assert info["netns"].startswith(str(env.tmp / "netns")), info["netns"]
        # One ADD of our network for this pod.
        assert [c for c in env.cni_calls()[calls0:] if c[1] == web] == [["ADD", web]]

        cid = env.run_ctr(web, cfg, "httpd", ["sh", "-c", HTTPD % web[:8]])
        want = "hello-from-%s\n" % web[:8]
        # From the host over the bridge, IPv4 and IPv6.
        got = wait_until(lambda: fetch("http://%s:8080/index.html" % ip), 60, "httpd at the pod IP")
        assert got == want
        assert fetch("http://[%s]:8080/index.html" % extra[0]) == want

        # hostPort via portmap: the host's own bridge-facing address (the
        # gateway) and 127.0.0.1 (portmap's localhost DNAT, route_localnet).
        gw = str(next(env.subnet4.hosts()))
        assert fetch("http://%s:%d/index.html" % (gw, hport)) == want
        assert fetch("http://127.0.0.1:%d/index.html" % hport) == want
        for a in sorted(host_addresses()):
            if ":" not in a and not a.startswith("127.") and a != gw:
                assert fetch("http://%s:%d/index.html" % (a, hport)) == want, a
                break

        # PodSandboxStats: the pod's interface as the pod sees it (the HTTP
        # answers went out of it, the requests came in); loopback and the
        # VM's tap mirror are not reported.
        net = env.rt.PodSandboxStats(pb.PodSandboxStatsRequest(pod_sandbox_id=web),
                                     timeout=60).stats.linux.network
        assert net.default_interface.name == "eth0", net
        assert net.default_interface.rx_bytes.value > 0 and net.default_interface.tx_bytes.value > 0, net
        assert [i.name for i in net.interfaces] == [], net

        # The pod's /etc files as the kubelet expects them.
        rc, out, err = env.exec_sync(cid, ["cat", "/etc/resolv.conf"])
        assert rc == 0, err
        lines = [l.split() for l in out.splitlines() if l.strip() and not l.startswith("#")]
        assert ["search"] + DNS["searches"] in lines, out
        assert ["options"] + DNS["options"] in lines, out
        assert [l[1] for l in lines if l[0] == "nameserver"] == DNS["servers"], out
        rc, out, err = env.exec_sync(cid, ["sh", "-c", "hostname; cat /etc/hostname; cat /etc/hosts"])
        assert rc == 0, err
        out = out.splitlines()
        assert out[0] == "web-0" and out[1] == "web-0", out
        hosts = [l.split() for l in out[2:] if l.strip() and not l.startswith("#")]
        assert ["127.0.0.1", "localhost"] in hosts, hosts
        assert any(h[0] == "::1" and "localhost" in h for h in hosts), hosts
        assert [str(ip), "web-0"] in hosts, hosts
        # The guest sees the addresses PodSandboxStatus reports.
        rc, out, err = env.exec_sync(cid, ["ip", "-o", "addr"])
        assert rc == 0 and str(ip) in out and str(extra[0]) in out, (out, err)
        # and loopback has both localhost addresses /etc/hosts names
        rc, out, err = env.exec_sync(cid, ["ip", "-o", "addr", "show", "dev", "lo"])
        assert rc == 0 and "127.0.0.1/8" in out and "::1/128" in out, (out, err)
        rc, out, err = env.exec_sync(cid, ["sh", "-c", "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | "
                                           "nc -w 10 ::1 8080"])
        assert rc == 0 and out.endswith("\r\n\r\n" + want), (rc, out, err)

        # From a second pod, over the bridge.
        ccfg = env.net_pod_config("client")
        client = env.run_cfg(ccfg)
        cip = env.pod_status(client).status.network.ip
        assert cip and cip != str(ip)
        c2 = env.run_ctr(client, ccfg, "c", ["sleep", "3600"])
        env.wait_ctr(c2, C_RUNNING)
        # (busybox-static's wget segfaults in a rootfs without libc's NSS
        # files, as it does in a bare chroot on the host: nc speaks HTTP.)
        rc, out, err = env.exec_sync(c2, ["sh", "-c", "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | "
                                          "nc -w 10 %s 8080" % ip])
        assert rc == 0 and out.startswith("HTTP/1.") and out.endswith("\r\n\r\n" + want), (rc, out, err)
        print("RunPodSandbox with network: %.2fs" % t_run)
    finally:
        for p in (web, client):
            if p:
                info = env.pod_info(p)
                env.remove_pod(p)
                env.assert_pod_gone(p, info)
    # DEL ran for both, and nothing of them is left.
    calls = env.cni_calls()[calls0:]
    assert ["DEL", web] in calls and ["DEL", client] in calls, calls
    assert fetch("http://127.0.0.1:%d/index.html" % hport, timeout=1) is None
    snap = env.snapshot(ids=(web, client))
    assert snap["links"] == [] and snap["netns"] == [] and snap["allocations"] == [] and snap["cache"] == [], snap
    assert snap["iptables"] == [], snap


# ---- iptables in a pod (service meshes) ------------------------------------------

IPT_IMAGE = "example.com/test/iptables:1.0"
XTABLES = "/usr/lib/x86_64-linux-gnu/xtables"


def iptables_layer():
    """Debian's iptables (nf_tables backend) with the libraries it loads and
    the three extensions the test uses, at their host paths."""
    binpath = "/usr/sbin/xtables-nft-multi"
    libs = set()  # by the name the loader asks for, in /usr/lib/<triplet> (merged /usr)
    for f in [binpath] + ["%s/libxt_%s.so" % (XTABLES, x) for x in ("standard", "tcp", "REDIRECT")]:
        for l in sh("ldd", f).splitlines():
            w = l.split()
            if "=>" in w and w[w.index("=>") + 1].startswith("/"):
                libs.add(w[w.index("=>") + 1])
    libs = {"/usr/lib/x86_64-linux-gnu/" + os.path.basename(l): os.path.realpath(l) for l in libs}
    files, dirs = [], set()

    def add(path, data, mode=0o755, link=None):
        parts = path.split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            if d not in dirs:
                dirs.add(d)
                files.append((d, None, 0o755, None))
        files.append((path, data, mode, link))

    add("usr/sbin/xtables-nft-multi", pathlib.Path(binpath).read_bytes())
    add("usr/sbin/iptables", None, 0o777, "xtables-nft-multi")
    for name, real in sorted(libs.items()):
        add(name.lstrip("/"), pathlib.Path(real).read_bytes())
    add("lib64/ld-linux-x86-64.so.2", pathlib.Path("/lib64/ld-linux-x86-64.so.2").read_bytes())
    for x in ("standard", "tcp", "REDIRECT"):
        add("%s/libxt_%s.so" % (XTABLES.lstrip("/"), x), pathlib.Path("%s/libxt_%s.so" % (XTABLES, x)).read_bytes())
    return layer_tar(files)


def test_iptables_redirect_in_pod(net_env):
    """What a service mesh's init container does: iptables (nf_tables) in the
    pod's network namespace redirects inbound port 80 to the sidecar's port.
    Checks that the guest kernel has the netfilter pieces it needs."""
    env = net_env
    if not os.path.exists("/usr/sbin/xtables-nft-multi") or not os.path.isdir(XTABLES):
        pytest.skip("Debian's iptables is not installed")
    layout = env.tmp / "ipt-layout"
    if not layout.exists():
        write_layout(layout, [busybox_rootfs_layer(), iptables_layer()], tag="1.0", cmd=("/bin/sh",))
    p = subprocess.run([str(BUILDDIR / "cocoonctl"), "-a", env.daemon.address, "image", "import", "--name",
                        IPT_IMAGE.rsplit(":", 1)[0], str(layout)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    cfg = env.net_pod_config("mesh")
    pod = env.run_cfg(cfg)
    try:
        ip = env.pod_status(pod).status.network.ip
        ccfg = env.ctr_config(cfg, "app", ["sh", "-c", HTTPD % "app"], image=IPT_IMAGE,
                              envs={"LD_LIBRARY_PATH": "/usr/lib/x86_64-linux-gnu",
                                    "XTABLES_LIBDIR": XTABLES})
        ccfg.linux.security_context.capabilities.add_capabilities.append("NET_ADMIN")
        cid = env.rt.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=pod, config=ccfg, sandbox_config=cfg),
                                     timeout=60).container_id
        env.start(cid)
        want = "hello-from-app\n"
        assert wait_until(lambda: fetch("http://%s:8080/index.html" % ip), 60, "httpd on 8080") == want
        assert fetch("http://%s:80/index.html" % ip, timeout=1) is None  # nothing on 80 yet
        rc, out, err = env.exec_sync(cid, ["/usr/sbin/iptables", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "80",
                                           "-j", "REDIRECT", "--to-ports", "8080"])
        assert rc == 0, (out, err)
        rc, out, err = env.exec_sync(cid, ["/usr/sbin/iptables", "-t", "nat", "-S", "PREROUTING"])
        assert rc == 0 and "--dport 80 -j REDIRECT --to-ports 8080" in out, (out, err)
        assert fetch("http://%s:80/index.html" % ip) == want
        # and a container without NET_ADMIN cannot change the pod's rules
        rc, out, err = env.exec_sync(env.run_ctr(pod, cfg, "other", ["sleep", "3600"], image=IPT_IMAGE,
                                                 envs={"LD_LIBRARY_PATH": "/usr/lib/x86_64-linux-gnu",
                                                       "XTABLES_LIBDIR": XTABLES}),
                                     ["/usr/sbin/iptables", "-t", "nat", "-F"])
        assert rc != 0, (out, err)
        assert fetch("http://%s:80/index.html" % ip) == want
    finally:
        info = env.pod_info(pod)
        env.remove_pod(pod)
        env.assert_pod_gone(pod, info)


TWO_IFACES = r"""#!/usr/bin/python3
# A chained plugin that gives the pod a second interface (one end of a veth
# pair whose other end stays in the netns: this host has no dummy links), as
# multi-network setups do, and reports it.
import json, os, subprocess, sys
conf = json.load(sys.stdin)
if os.environ["CNI_COMMAND"] != "ADD":
    sys.exit(0)
ns = "--net=" + os.environ["CNI_NETNS"]
for cmd in (["ip", "link", "add", "net1", "address", "02:00:00:cc:00:01", "type", "veth", "peer", "name", "net1p"],
            ["ip", "link", "set", "net1p", "up"], ["ip", "link", "set", "net1", "up"]):
    subprocess.run(["nsenter", ns] + cmd, check=True, stdout=sys.stderr)
r = conf["prevResult"]
r["interfaces"].append({"name": "net1", "mac": "02:00:00:cc:00:01", "sandbox": os.environ["CNI_NETNS"]})
print(json.dumps(r))
"""


def test_two_interfaces_get_two_nics(net_env):
    """RunPodSandbox starts the VM before CNI runs, with one NIC; a network
    that gives the pod a second interface makes it stop that VM and boot one
    with a NIC per interface. Both show up in the guest under their CNI names."""
    env = net_env
    plugin = env.tmp / "cni-bin" / "cc-two"
    plugin.write_text(TWO_IFACES)
    plugin.chmod(0o755)
    env.write_conf(plugins=env.net["plugins"] + [{"type": "cc-two"}])
    pod = None
    try:
        cfg = env.net_pod_config("twoif")
        pod = env.run_cfg(cfg)
        st = env.pod_status(pod).status
        assert st.state == READY and ipaddress.ip_address(st.network.ip) in env.subnet4
        cid = env.run_ctr(pod, cfg, "c", ["sleep", "3600"])
        env.wait_ctr(cid, C_RUNNING)
        rc, out, err = env.exec_sync(cid, ["cat", "/proc/net/dev"])
        names = sorted(l.split(":")[0].strip() for l in out.splitlines()[2:])
        assert rc == 0 and names == ["eth0", "lo", "net1"], (out, err)
        rc, out, err = env.exec_sync(cid, ["ip", "-o", "link", "show", "net1"])
        assert rc == 0 and "02:00:00:cc:00:01" in out, (out, err)
        # the first VM is gone: one QEMU for this pod
        info = env.pod_info(pod)
        qemus = [p for p, cmd in procs_mentioning("cocoon-" + pod).items() if "qemu-system" in cmd]
        assert qemus == [info["vmmPid"]], (qemus, info)
    finally:
        env.write_conf()
        if pod:
            info = env.pod_info(pod)
            env.remove_pod(pod)
            env.assert_pod_gone(pod, info)


def test_network_ready(net_env):
    c = net_env.network_condition()
    assert c.status is True and c.reason == "" and c.message == "", c


# ---- ten pods at once --------------------------------------------------------------

def test_ten_pods_concurrently_leave_host_as_before(net_env):
    env = net_env
    before = env.snapshot()
    ports = [free_port() for _ in range(10)]
    ids, cfgs, errors = [None] * 10, [None] * 10, []

    def run(i):
        try:
            cfgs[i] = env.net_pod_config("many-%d" % i, ports=[(80, ports[i])])
            ids[i] = env.run_cfg(cfgs[i])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append("pod %d: %s" % (i, e))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    infos = {}
    try:
        assert not errors, errors
        ips = [env.pod_status(i).status.network.ip for i in ids]
        assert len(set(ips)) == 10 and all(ipaddress.ip_address(x) in env.subnet4 for x in ips), ips
        infos = {i: env.pod_info(i) for i in ids}
        during = env.snapshot(ids=ids)
        assert len(during["links"]) == 10, during["links"]
        assert len(during["netns"]) >= 10 and len(during["allocations"]) == 20, during
        assert all(any(str(p) in l for l in during["iptables"]) for p in ports), during["iptables"]
    finally:
        def rm(i):
            try:
                infos.setdefault(i, env.pod_info(i))
                env.remove_pod(i)
            except Exception as e:  # noqa: BLE001
                errors.append("remove %s: %s" % (i[:12], e))
        threads = [threading.Thread(target=rm, args=(i,)) for i in ids if i]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors
    for i in ids:
        env.assert_pod_gone(i, infos[i])
    after = env.snapshot(ids=ids)
    assert after == before, {k: (before[k], after[k]) for k in before if before[k] != after[k]}


# ---- host network ------------------------------------------------------------------

def test_host_network_pod_no_netns_no_cni_node_ip(net_env):
    env = net_env
    calls0 = len(env.cni_calls())
    before = env.snapshot()
    cfg = env.net_pod_config("hostnet", network=NODE, hostname="")
    pod = env.run_cfg(cfg)
    try:
        st = env.pod_status(pod).status
        assert st.linux.namespaces.options.network == NODE
        info = env.pod_info(pod)
        assert info["hostNetwork"] is True and not info.get("netns"), info
        assert env.cni_calls()[calls0:] == []
        assert env.snapshot() == before
        # Its IP is the node's.
        assert st.network.ip in host_addresses(), (st.network.ip, host_addresses())
    finally:
        env.remove_pod(pod)
    assert env.cni_calls()[calls0:] == []


# ---- no configuration, failing plugins ------------------------------------------------

def test_no_cni_config_network_not_ready_loopback_only(fail_env):
    env = fail_env
    env.clear_conf()
    c = env.wait_network_ready(False)
    assert c.reason and str(env.tmp / "cni-conf") in c.message, c
    # As implemented (runtime/pod.c setup_net, issue 5): the pod runs with a
    # network namespace holding loopback only.
    cfg = env.net_pod_config("lo-only")
    pod = env.run_cfg(cfg)
    info = env.pod_info(pod)
    try:
        st = env.pod_status(pod).status
        assert st.state == READY and st.network.ip == "" and len(st.network.additional_ips) == 0
        cid = env.run_ctr(pod, cfg, "c", ["sleep", "3600"])
        env.wait_ctr(cid, C_RUNNING)
        rc, out, err = env.exec_sync(cid, ["cat", "/proc/net/dev"])
        assert rc == 0, err
        ifaces = sorted(l.split(":")[0].strip() for l in out.splitlines()[2:])
        assert ifaces == ["lo"], out
        assert env.cni_calls() == []
    finally:
        env.remove_pod(pod)
    env.assert_pod_gone(pod, info)
    assert os.listdir(env.tmp / "netns") == []


def _failing_plugins(env, kind):
    p = json.loads(json.dumps(env.net["plugins"]))
    extra = {"missing": "cc-missing", "fails": "cc-fail", "hangs": "cc-hang"}[kind]
    # After bridge and portmap: the failure comes once a veth, an IP and
    # iptables rules exist, all of which must be undone.
    return p[:2] + [{"type": extra}] + p[2:], extra


@pytest.mark.parametrize("kind", ["missing", "fails", "hangs"])
def test_plugin_failure_leaves_nothing(fail_env, kind):
    env = fail_env
    plugins, name = _failing_plugins(env, kind)
    env.write_conf(plugins)
    # Wait for the daemon to have read this config (the bridge spy has not
    # run yet, so a "missing" config may stay NetworkReady=false).
    time.sleep(0.5)
    if kind == "missing":
        # Status says why (the config is there, its plugin is not).
        c = env.wait_network_ready(False)
        assert name in c.message and c.reason, c
    else:
        env.wait_network_ready(True)
    before = env.snapshot()
    calls0 = len(env.cni_calls())
    hport = free_port()
    cfg = env.net_pod_config("doomed-" + kind, ports=[(80, hport)])
    t0 = time.monotonic()
    try:
        pod = env.run_cfg(cfg)
    except grpc.RpcError as e:
        code, msg = e.code(), e.details()
    else:
        info = env.pod_info(pod)
        ip = env.pod_status(pod).status.network.ip
        env.remove_pod(pod)
        env.assert_pod_gone(pod, info)
        raise AssertionError("RunPodSandbox succeeded with a %s plugin %s (pod IP %r%s)"
                             % (kind, name, ip, ": loopback only" if not ip else ""))
    took = time.monotonic() - t0
    assert name in msg, (code, msg)
    if kind == "fails":
        assert "cc-fail refuses the pod" in msg, msg
    elif kind == "hangs":
        assert took < 3 * 3 + 10, took
        assert "no reply within 3000 ms" in msg, msg
        wait_until(lambda: not [p for p, c in procs_mentioning("sleep 3599").items() if c.startswith("/bin/sleep")],
                   10, "the hung plugin to be killed")
    assert code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN,
                    grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.DEADLINE_EXCEEDED,
                    grpc.StatusCode.NOT_FOUND), (code, msg)
    assert len(env.rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=30).items) == 0
    after = env.snapshot()
    assert after == before, {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    # The bridge plugin did run (so a veth, an IP and rules had existed).
    calls = env.cni_calls()[calls0:]
    if kind != "missing" or calls:
        assert calls and calls[0][0] == "ADD" and ["DEL", calls[0][1]] in calls, calls
    env.assert_clean()
