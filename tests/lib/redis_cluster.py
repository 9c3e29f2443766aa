"""A Redis Cluster on 127.0.0.1 for tests: `masters` masters with `replicas` replicas each,
started with redis-server --cluster-enabled yes and joined by redis-cli --cluster create.

    c = RedisCluster(tmpdir, masters=3, replicas=1).start()   # waits for cluster_state:ok
    c.ports, c.masters(), c.client(port), c.kill(port), c.stop()

Every node listens on a port P and its cluster bus on P + 10000, both loopback; ports are
taken from 20000-29999 where both are free. Every wait has a deadline and checks that the
nodes are alive; stop() (also at exit) kills what start() began.
"""

import os
import random
import socket
import subprocess
import time

import redis
from servers import ClusterError, ServerGroup

HOST = "127.0.0.1"


def _free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
            return True
        except OSError:
            return False


def _pick_ports(n):
    rng = random.Random(os.getpid() ^ int(time.time()))
    ports = []
    while len(ports) < n:
        p = rng.randrange(20000, 30000)
        if p not in ports and _free(p) and _free(p + 10000):
            ports.append(p)
    return ports


class RedisCluster(ServerGroup):
    def __init__(self, workdir, masters=3, replicas=1, node_timeout_ms=2000):
        super().__init__("redis cluster", f"logs in {workdir}/redis-PORT/redis.log",
                         (redis.RedisError, OSError))
        self.workdir = workdir
        self.n_masters = masters
        self.n_replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.ports = []

    # ------------------------------------------------------------------ nodes
    def _start_node(self, port):
        d = os.path.join(self.workdir, f"redis-{port}")
        os.makedirs(d, exist_ok=True)
        out = open(os.path.join(d, "out.log"), "ab")
        self.procs[port] = subprocess.Popen(
            ["redis-server", "--bind", HOST, "--port", str(port), "--dir", d,
             "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", str(self.node_timeout_ms),
             "--save", "", "--appendonly", "no", "--daemonize", "no",
             "--protected-mode", "yes", "--logfile", os.path.join(d, "redis.log")],
            cwd=d, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True)
        out.close()

    def client(self, port):
        """A redis-py client of one node; CLUSTER replies come back raw (RESP2)."""
        c = redis.Redis(host=HOST, port=port, socket_timeout=5)
        for cmd in [k for k in c.response_callbacks if k.startswith("CLUSTER ")]:
            del c.response_callbacks[cmd]
        return c

    # -------------------------------------------------------------- lifecycle
    def start(self, timeout_s=60):
        n = self.n_masters * (1 + self.n_replicas)
        self.ports = _pick_ports(n)
        for p in self.ports:
            self._start_node(p)
        self.wait(lambda: all(self.client(p).ping() for p in self.ports), timeout_s,
                   "answering PING")
        cmd = ["redis-cli", "--cluster", "create"] + [f"{HOST}:{p}" for p in self.ports] + \
            ["--cluster-replicas", str(self.n_replicas), "--cluster-yes"]
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout_s)
        if r.returncode != 0:
            raise ClusterError(f"redis-cli --cluster create failed ({r.returncode}): "
                               f"{r.stdout[-2000:]} {r.stderr[-2000:]}")
        self.wait_ok(timeout_s)

        def replicas_synced():
            links = [self.client(p).info("replication") for p in self.ports]
            return sum(1 for i in links if i.get("role") == "slave" and
                       i.get("master_link_status") == "up") == n - self.n_masters

        self.wait(replicas_synced, timeout_s, "every replica's link to its master up")
        return self

    def wait_ok(self, timeout_s=60, ports=None):
        """Waits until every live node says cluster_state:ok and the same slot map, in
        which no killed node serves a slot (its replica has been promoted)."""
        ports = ports or [p for p in self.ports if self.procs[p].poll() is None]

        def ok():
            maps = set()
            for p in ports:
                c = self.client(p)
                if c.execute_command("CLUSTER INFO").decode().find("cluster_state:ok") < 0:
                    return False
                maps.add(tuple(sorted((s[0], s[1], s[2][1]) for s in
                                      c.execute_command("CLUSTER SLOTS"))))
            if len(maps) != 1:
                return False
            ranges = next(iter(maps))
            return sum(e - b + 1 for b, e, _ in ranges) == 16384 and \
                not any(int(port) in self.killed for _, _, port in ranges)

        self.wait(ok, timeout_s, "cluster_state:ok with one slot map of live masters")

    def masters(self):
        """{port: [(first, last), ...]} of the masters, from CLUSTER SLOTS."""
        for p in self.ports:
            if self.procs[p].poll() is None:
                out = {}
                for first, last, master, *_ in self.client(p).execute_command("CLUSTER SLOTS"):
                    out.setdefault(int(master[1]), []).append((int(first), int(last)))
                return out
        raise ClusterError("redis cluster: no live node")
