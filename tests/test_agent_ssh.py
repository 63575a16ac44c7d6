"""The inspection agent through a real OpenSSH: an sshd on a free 127.0.0.1
port (tests/harness.py SshServer), the system ssh client, and the agent's
words quoted for the remote shell exactly as the desktop app's Remote site
source sends them (docs/AGENT.md, Transports). The environment does not cross
ssh: the test's aliases and path go as env(1) words, as a site's would be in
its own settings and virtualenv."""

import os
import time

import pytest
from django.core.cache import caches

from agent_client import AgentClient, agent_command
from harness import SshServer

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = SshServer(tmp_path_factory.mktemp("sshd")).start()
    try:
        yield server
    finally:
        server.stop()


def over_ssh(sshd, regions, read_only=False):
    env = regions.child_env()
    words = {k: env[k] for k in ("REGIONCACHE_TEST_CACHES", "PYTHONPATH", "DJANGO_SETTINGS_MODULE")
             if k in env}
    argv = agent_command("djangoproject.settings", [TESTS_DIR], read_only=read_only,
                         prefix=sshd.prefix(), env=words)
    return AgentClient(argv, timeout=60)


def test_the_agent_over_real_ssh_lists_reads_and_deletes(sshd, regions):
    alias = regions.register(regions.conf(OPTIONS={"SIZE": "16MB"}, KEY_PREFIX="ssh"))
    cache = caches[alias]
    cache.set_many({f"k{i}": f"value {i}" for i in range(50)}, timeout=600)
    with over_ssh(sshd, regions) as a:
        assert a.hello["hello"] == "regioncache-agent" and "error" not in a.hello
        assert a.hello["read_only"] is False
        assert alias in [r["alias"] for r in a.ok("regions")["regions"]]
        assert a.ok("stats", region=alias)["stats"]["entries"] == 50
        keys = sorted(e["key"] for e in a.list_all(alias, limit=7))
        assert keys == sorted(cache.make_key(f"k{i}") for i in range(50))
        assert a.get_bytes(alias, cache.make_key("k7"))["data"] == b"value 7"
        assert a.ok("delete", region=alias, keys=[cache.make_key("k7")])["deleted"] == 1
        r = a.ok("purge", region=alias, glob=cache.make_key("k1*"))
        assert r["removed"] == 11  # k1, k10..k19
    assert cache.get("k7") is None and cache.get("k12") is None
    assert cache.get("k2") == "value 2"


def test_a_read_only_agent_over_ssh_refuses_writes(sshd, regions):
    alias = regions.register(regions.conf(OPTIONS={"SIZE": "16MB"}))
    caches[alias].set("kept", 1, timeout=600)
    with over_ssh(sshd, regions, read_only=True) as a:
        assert a.hello["read_only"] is True
        for op, fields in (("delete", {"keys": [caches[alias].make_key("kept")]}),
                           ("purge", {"glob": "*"}), ("purge_expired", {}), ("clear", {})):
            r = a.call(op, region=alias, **fields)
            assert r["ok"] is False and r["error"]["code"] == "read_only", r
    assert caches[alias].get("kept") == 1


def test_a_killed_ssh_connection_ends_the_remote_agent(sshd, regions):
    # The transport dying (the ssh client killed, as a laptop's lid closes)
    # leaves no agent behind on the host: its input ends, it exits.
    alias = regions.register(regions.conf(OPTIONS={"SIZE": "16MB"}))
    caches[alias].set("made", 1)  # the site makes the segment; the agent only attaches
    a = over_ssh(sshd, regions)
    try:
        pid = a.hello["pid"]
        assert a.ok("stats", region=alias)["ok"]
        a.proc.kill()
        a.proc.wait(10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
            time.sleep(0.05)
        assert not os.path.exists(f"/proc/{pid}"), "the agent outlived its ssh connection"
    finally:
        a.close()
