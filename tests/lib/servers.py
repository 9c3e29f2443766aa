"""Processes a test starts as a group (the servers of a Redis or Kafka cluster): waits
with a deadline that fail as soon as a member dies, kills on purpose, and a stop that
ends them all (registered at exit).

    g = ServerGroup("redis cluster", logs_hint); g.procs[key] = Popen(...)
    g.wait(pred, timeout_s, "answering PING"); g.kill(key); g.stop()
"""

import atexit
import subprocess
import time


class ClusterError(Exception):
    pass


class ServerGroup:
    def __init__(self, name, logs_hint, transient=(Exception,)):
        self.name = name
        self.logs_hint = logs_hint  # where a dead member's log is, for the error
        self.transient = transient  # exceptions of pred() that mean "not yet"
        self.procs = {}
        self.killed = set()  # members stopped on purpose (kill)
        atexit.register(self.stop)

    def alive_or_raise(self, what):
        dead = {k: p.returncode for k, p in self.procs.items()
                if k not in self.killed and p.poll() is not None}
        if dead:
            raise ClusterError(f"{self.name}: member(s) exited while {what}: {dead} "
                               f"({self.logs_hint})")

    def wait(self, pred, timeout_s, what, interval_s=0.2):
        """Polls pred() until truthy; raises when a member dies or after timeout_s."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.alive_or_raise(what)
            try:
                if pred():
                    return
            except self.transient:
                pass
            if time.monotonic() > deadline:
                raise ClusterError(f"{self.name}: not {what} after {timeout_s} s")
            time.sleep(interval_s)

    def kill(self, key, sig=9, timeout_s=30):
        self.killed.add(key)
        self.procs[key].send_signal(sig)
        self.procs[key].wait(timeout=timeout_s)

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
        for p in self.procs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
