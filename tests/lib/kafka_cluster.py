"""A Kafka KRaft cluster on 127.0.0.1 for tests: `n` nodes, each broker and controller
(a 3-voter quorum for n = 3), replication factor n and min.insync.replicas n - 1 for
every topic it creates, the group offsets topic included. The jars are the stack's
(scripts/bootstrap: .cache/kafka/<version>/libs).

    k = KafkaCluster(tmpdir, n=3).start()        # waits until every broker is registered
    k.bootstrap, k.create_topics([(name, partitions)]), k.leader(topic, p), k.kill(node_id)

Every wait has a deadline and checks that the brokers are alive; stop() (also at exit)
kills what start() began.
"""

import os
import subprocess
import sys
import types

ROOT = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "scripts", "lib"))
import stack  # noqa: E402
from servers import ClusterError, ServerGroup  # noqa: E402

HOST = stack.HOST
KAFKA_VERSION = os.environ.get("INTERESTD_KAFKA_VERSION", "4.1.1")


class KafkaCluster(ServerGroup):
    def __init__(self, workdir, n=3):
        super().__init__("kafka cluster", f"see {workdir}/kafka-N/out.log, logs/server.log")
        self.workdir = workdir
        self.n = n
        self.min_isr = max(1, n - 1)
        self.libs = os.path.join(ROOT, ".cache", "kafka", KAFKA_VERSION, "libs")
        self.ports = {}  # node id -> (broker port, controller port)
        self._admin = None

    @property
    def bootstrap(self):
        return ",".join(f"{HOST}:{self.ports[i][0]}" for i in sorted(self.ports))

    def _node(self, i):
        d = os.path.join(self.workdir, f"kafka-{i}")
        return types.SimpleNamespace(kafka_dir=d, kafka_libs=self.libs)

    def _properties(self, i, voters):
        kport, cport = self.ports[i]
        rf, isr = self.n, self.min_isr
        return f"""\
process.roles=broker,controller
node.id={i}
controller.quorum.voters={voters}
listeners=PLAINTEXT://{HOST}:{kport},CONTROLLER://{HOST}:{cport}
advertised.listeners=PLAINTEXT://{HOST}:{kport}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={os.path.join(self._node(i).kafka_dir, "data")}
num.partitions=1
default.replication.factor={rf}
min.insync.replicas={isr}
offsets.topic.replication.factor={rf}
offsets.topic.num.partitions=8
transaction.state.log.replication.factor={rf}
transaction.state.log.min.isr={isr}
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor={rf}
share.coordinator.state.topic.min.isr={isr}
unclean.leader.election.enable=false
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
log.segment.bytes=67108864
"""

    def start(self, timeout_s=120):
        if not os.path.isfile(os.path.join(self.libs, f"kafka_2.13-{KAFKA_VERSION}.jar")):
            raise ClusterError(f"kafka: no jars in {self.libs}: run scripts/bootstrap")
        free = stack.free_ports(2 * self.n)
        for i in range(1, self.n + 1):
            self.ports[i] = (free[2 * i - 2], free[2 * i - 1])
        voters = ",".join(f"{i}@{HOST}:{self.ports[i][1]}" for i in sorted(self.ports))
        cid = stack.kafka_cluster_id()
        for i in sorted(self.ports):
            node = self._node(i)
            for sub in ("data", "logs"):
                os.makedirs(os.path.join(node.kafka_dir, sub), exist_ok=True)
            props = os.path.join(node.kafka_dir, "server.properties")
            with open(props, "w") as f:
                f.write(self._properties(i, voters))
            with open(os.path.join(node.kafka_dir, "log4j2.properties"), "w") as f:
                f.write(stack.LOG4J2_PROPERTIES)
            out_path = os.path.join(node.kafka_dir, "out.log")
            with open(out_path, "ab") as out:
                r = subprocess.run(stack.java_cmd(node, "kafka.tools.StorageTool", "format",
                                                  "-t", cid, "-c", props),
                                   cwd=node.kafka_dir, stdout=out, stderr=subprocess.STDOUT,
                                   timeout=timeout_s)
            if r.returncode != 0:
                raise ClusterError(f"kafka node {i}: storage format exit {r.returncode}, "
                                   f"see {out_path}")
        for i in sorted(self.ports):
            node = self._node(i)
            out = open(os.path.join(node.kafka_dir, "out.log"), "ab")
            self.procs[i] = subprocess.Popen(
                stack.java_cmd(node, "kafka.Kafka",
                               os.path.join(node.kafka_dir, "server.properties")),
                cwd=node.kafka_dir, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
            out.close()
        self.wait(lambda: len(self.admin().list_topics(timeout=3).brokers) == self.n,
                   timeout_s, f"{self.n} brokers registered")
        return self

    def admin(self):
        """One admin client for the cluster's life (its futures die with it)."""
        if self._admin is None:
            self._admin = stack.admin_client(self.bootstrap)
        return self._admin

    def create_topics(self, topics, timeout_s=60):
        """Creates [(name, partitions)], replication factor n, and waits until every
        partition has a leader and n in-sync replicas."""
        from confluent_kafka.admin import NewTopic
        futs = self.admin().create_topics(
            [NewTopic(name, num_partitions=p, replication_factor=self.n,
                      config={"min.insync.replicas": str(self.min_isr)}) for name, p in topics],
            operation_timeout=30)
        for fut in futs.values():
            fut.result(timeout=timeout_s)

        def ready():
            md = self.admin().list_topics(timeout=3)
            return all(name in md.topics and len(md.topics[name].partitions) == p and
                       all(q.leader >= 0 and len(q.isrs) == self.n
                           for q in md.topics[name].partitions.values())
                       for name, p in topics)

        self.wait(ready, timeout_s, f"topics {[t for t, _ in topics]} fully replicated")

    def leader(self, topic, partition):
        return self.admin().list_topics(topic, timeout=5).topics[topic].partitions[partition].leader

    def isr(self, topic, partition):
        return list(self.admin().list_topics(topic, timeout=5)
                    .topics[topic].partitions[partition].isrs)

    def wait_leaders_without(self, topic, partitions, node_id, timeout_s=60):
        """Waits until no partition of topic is led by node_id (it was killed)."""
        self.wait(lambda: all(self.leader(topic, p) not in (node_id, -1)
                               for p in range(partitions)),
                   timeout_s, f"leaders of {topic} moved off node {node_id}")
