"""cocoonctl's pod and container commands (run, ps, logs, exec, pod ls/inspect/rm,
rm) against a real cocoond booting real pod VMs: what an operator without
crictl, and the README's demo, rely on."""
import json
import subprocess

from conftest import binary
from pods import IMAGE, pod_env, wait_until  # noqa: F401


def ctl(env, *args, timeout=300):
    return subprocess.run([binary("cocoonctl"), "-a", env.daemon.address, *args],
                          capture_output=True, text=True, timeout=timeout)


def pods_named(env, name):
    r = ctl(env, "--json", "pod", "ls")
    assert r.returncode == 0, r.stderr
    return [p for p in json.loads(r.stdout) if p["name"] == name]


def test_run_ps_logs_exec_rm(pod_env, tmp_path):
    env = pod_env
    r = ctl(env, "run", "--name", "ctltest", "--log-dir", str(tmp_path), "--env", "GREETING=hi",
            IMAGE, "--", "sh", "-c", 'echo "$GREETING from ctl"; exec sleep 1000')
    assert r.returncode == 0, r.stderr
    ids = dict(line.split() for line in r.stdout.splitlines())
    pod, ctr = ids["pod"], ids["container"]

    ps = json.loads(ctl(env, "--json", "ps").stdout)
    mine = [c for c in ps if c["id"] == ctr]
    assert mine and mine[0]["state"] == "Running" and mine[0]["podSandboxId"] == pod, ps
    assert mine[0]["name"] == "ctltest" and mine[0]["image"] == IMAGE
    # the table form names the pod by its own id, not the container's
    table = ctl(env, "ps").stdout
    assert ctr[:13] in table and pod[:13] in table, table

    assert wait_until(lambda: "hi from ctl" in ctl(env, "logs", ctr).stdout, 60, "the log line")
    assert list(tmp_path.glob("default_ctltest_*/ctltest/0.log")), list(tmp_path.rglob("*"))

    r = ctl(env, "exec", ctr, "--", "sh", "-c", "echo out; echo err >&2; exit 5")
    assert (r.returncode, r.stdout, r.stderr) == (5, "out\n", "err\n")

    [p] = pods_named(env, "ctltest")
    assert p["id"] == pod and p["state"] == "Ready"
    r = ctl(env, "pod", "inspect", pod[:12])
    assert r.returncode == 0 and "state:    Ready" in r.stdout and '"mode":"vm"' in r.stdout, r.stdout

    r = ctl(env, "rm", ctr)
    assert r.returncode == 0, r.stderr
    assert ctr not in ctl(env, "--json", "ps", "-a").stdout
    r = ctl(env, "pod", "rm", pod)
    assert r.returncode == 0, r.stderr
    assert pods_named(env, "ctltest") == []
    env.assert_clean()


def test_run_with_a_missing_image_leaves_no_pod(pod_env, tmp_path):
    env = pod_env
    r = ctl(env, "run", "--name", "ctlbad", "--log-dir", str(tmp_path), "example.com/no/such:1")
    assert r.returncode == 1
    assert "example.com/no/such:1" in r.stderr and "not found" in r.stderr, r.stderr
    assert pods_named(env, "ctlbad") == []  # the pod it made for the container is gone again
    env.assert_clean()


def test_usage_errors(pod_env):
    env = pod_env
    assert ctl(env, "run").returncode == 2
    assert ctl(env, "run", "--name", "../x", IMAGE).returncode == 2
    assert ctl(env, "run", "--log-dir", "relative", IMAGE).returncode == 2
    assert ctl(env, "exec", "abc").returncode == 2
    r = ctl(env, "exec", "0" * 64, "--", "true")
    assert r.returncode == 1 and "not found" in r.stderr.lower(), r.stderr
