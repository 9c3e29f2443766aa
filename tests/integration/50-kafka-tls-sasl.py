#!/usr/bin/env python3
"""interestd against a Kafka broker that only speaks SASL_SSL with SCRAM-SHA-512
(docs/SECURITY.md). The test makes its own CA and broker certificate (openssl; the
broker's key and certificate in a PKCS12 keystore, the CA in a PKCS12 truststore made
by keytool), creates the SCRAM credentials when it formats the broker's storage
(kafka-storage format --add-scram) and starts a private single-node KRaft broker with
a SASL_SSL listener on loopback (plus a plaintext listener for the broker's own
inter-broker traffic, which no client is given). interestd is configured with
kafka.security.protocol=SASL_SSL, kafka.sasl.mechanisms=SCRAM-SHA-512, the username
and password and kafka.ssl.ca.location; events produced over TLS+SASL (scripts/replay
with the same settings) are applied in Redis, each user's count exact, and snapshots
reach their topic. A client that does not trust the CA cannot connect, and with a
wrong password the daemon logs the SASL authentication failure (what it does then is
reported by the test's output and asserted: no crash, one error line per distinct reason
naming protocol and mechanism, the failure in the sd_notify STATUS and counted in
/metrics, librdkafka's own lines in our log format, no events applied, and SIGTERM
still stops it).
Optional: skipped (exit 77, counted as skipped) without openssl, keytool or java, the
Kafka jars, or a librdkafka >= 2.6.1 (the system's or the venv's confluent-kafka wheel)."""
import ctypes
import glob
import os
import re
import signal
import subprocess
import sys
import time
import types

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "scripts", "lib"))
import harness  # noqa: E402
import interestd_e2e as e2e  # noqa: E402
import stack  # noqa: E402

N_USERS, N_EVENTS = 40, 600
SCRAM_USER = "interestd"
SCRAM_PASSWORD = "scram-test-Pw-4c1e"
PLAIN_PASSWORD = "plain-test-Pw-77d0"
STORE_PASSWORD = "store-test-pw"
# librdkafka before 2.6.1 answers a SCRAM challenge in a way Kafka 4.x rejects
# (confluentinc/librdkafka#4895: the client nonce appended twice); Debian 12 ships 2.0.2.
RDKAFKA_SCRAM_KAFKA4 = 0x020601ff
BROKER_START_TIMEOUT_S = 120
HOST = "127.0.0.1"

for tool_name in ("openssl", "keytool", "java"):
    if subprocess.run(["sh", "-c", f"command -v {tool_name}"], stdout=subprocess.DEVNULL).returncode:
        print(f"SKIP: {tool_name} not installed", flush=True)
        sys.exit(77)
libs = sorted(glob.glob(os.path.join(harness.ROOT, ".cache", "kafka", "*", "libs")))
if not libs:
    print("SKIP: no Kafka jars under .cache/kafka (make deps)", flush=True)
    sys.exit(77)

env = harness.start()  # Redis (and a plaintext Kafka this test does not use)
model, sample = e2e.test_model()
items = e2e.catalog_item_ids(sample)
tmp = env["HARNESS_TMP"]
pki = os.path.join(tmp, "pki")
os.makedirs(pki)


def run(cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        e2e.fail(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout[-2000:]}")
    return r.stdout


# ---- certificates: CA, broker certificate for 127.0.0.1, keystore, truststore -------
ca_key, ca_pem = os.path.join(pki, "ca.key"), os.path.join(pki, "ca.pem")
br_key, br_csr, br_pem = (os.path.join(pki, n) for n in ("broker.key", "broker.csr", "broker.pem"))
keystore, truststore = os.path.join(pki, "broker.p12"), os.path.join(pki, "truststore.p12")
ext = os.path.join(pki, "san.ext")
with open(ext, "w") as f:
    f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca_pem,
     "-days", "2", "-subj", "/CN=interestd test CA"])
run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", br_key, "-out", br_csr,
     "-subj", "/CN=127.0.0.1"])
run(["openssl", "x509", "-req", "-in", br_csr, "-CA", ca_pem, "-CAkey", ca_key, "-CAcreateserial",
     "-out", br_pem, "-days", "2", "-extfile", ext])
run(["openssl", "pkcs12", "-export", "-in", br_pem, "-inkey", br_key, "-certfile", ca_pem,
     "-name", "broker", "-out", keystore, "-passout", f"pass:{STORE_PASSWORD}"])
run(["keytool", "-importcert", "-noprompt", "-alias", "ca", "-file", ca_pem, "-keystore",
     truststore, "-storetype", "PKCS12", "-storepass", STORE_PASSWORD])
other_ca = os.path.join(pki, "other-ca.pem")
run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
     os.path.join(pki, "other-ca.key"), "-out", other_ca, "-days", "2", "-subj", "/CN=other CA"])
e2e.ok("CA, broker certificate (SAN IP:127.0.0.1) in a PKCS12 keystore, CA truststore (keytool)")

# ---- the private SASL_SSL broker ---------------------------------------------------
sport, iport, cport = stack.free_ports(3)
kdir = os.path.join(tmp, "kafka")
os.makedirs(os.path.join(kdir, "data"))
os.makedirs(os.path.join(kdir, "logs"))
st = types.SimpleNamespace(kafka_dir=kdir, kafka_libs=libs[-1])
props = os.path.join(kdir, "server.properties")
with open(props, "w") as f:
    f.write(f"""\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{HOST}:{cport}
listeners=SASL_SSL://{HOST}:{sport},INTERNAL://{HOST}:{iport},CONTROLLER://{HOST}:{cport}
advertised.listeners=SASL_SSL://{HOST}:{sport},INTERNAL://{HOST}:{iport}
controller.listener.names=CONTROLLER
inter.broker.listener.name=INTERNAL
listener.security.protocol.map=CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_{SCRAM_USER}="{PLAIN_PASSWORD}";
ssl.keystore.type=PKCS12
ssl.keystore.location={keystore}
ssl.keystore.password={STORE_PASSWORD}
ssl.key.password={STORE_PASSWORD}
ssl.truststore.type=PKCS12
ssl.truststore.location={truststore}
ssl.truststore.password={STORE_PASSWORD}
ssl.client.auth=none
log.dirs={os.path.join(kdir, 'data')}
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
num.network.threads=2
num.io.threads=2
""")
with open(os.path.join(kdir, "log4j2.properties"), "w") as f:
    f.write(stack.LOG4J2_PROPERTIES)
kout = os.path.join(tmp, "kafka.out")
with open(kout, "ab") as out:
    r = subprocess.run(stack.java_cmd(st, "kafka.tools.StorageTool", "format", "-t",
                                      stack.kafka_cluster_id(), "-c", props, "--add-scram",
                                      f"SCRAM-SHA-512=[name={SCRAM_USER},password={SCRAM_PASSWORD}]"),
                       cwd=kdir, stdout=out, stderr=subprocess.STDOUT)
if r.returncode != 0:
    e2e.fail(f"kafka-storage format --add-scram exited {r.returncode}, see {kout}")
with open(kout, "ab") as out:
    broker = subprocess.Popen(stack.java_cmd(st, "kafka.Kafka", props), cwd=kdir,
                              stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                              start_new_session=True)


def stop_broker():
    stack.stop_pid("kafka-sasl", broker.pid, 30, True)
    broker.wait()


harness.on_exit(stop_broker)
bootstrap = f"{HOST}:{sport}"
sasl = {"security.protocol": "SASL_SSL", "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": SCRAM_USER, "sasl.password": SCRAM_PASSWORD,
        "ssl.ca.location": ca_pem}


def admin(conf):
    from confluent_kafka.admin import AdminClient
    return AdminClient(dict({"bootstrap.servers": bootstrap, "socket.timeout.ms": 5000,
                             "logger": stack.quiet_logger()}, **conf))


t0 = time.monotonic()
while True:
    if broker.poll() is not None:
        e2e.fail(f"the SASL_SSL broker exited {broker.returncode}, see {kout}:\n"
                 + open(kout, errors="replace").read()[-2000:])
    try:
        if admin(sasl).list_topics(timeout=3).brokers:
            break
    except Exception:  # noqa: BLE001 - not up yet
        pass
    if time.monotonic() - t0 > BROKER_START_TIMEOUT_S:
        e2e.fail(f"no metadata over SASL_SSL from {bootstrap} after {BROKER_START_TIMEOUT_S} s")
    time.sleep(0.5)
e2e.ok(f"SASL_SSL broker up on {bootstrap} after {time.monotonic() - t0:.1f} s "
       f"(SCRAM-SHA-512 user {SCRAM_USER} created at format time)")

from confluent_kafka import KafkaException  # noqa: E402
from confluent_kafka.admin import NewTopic  # noqa: E402
topics = [(env["EVENTS_TOPIC"], 4), (env["SNAPSHOTS_TOPIC"], 1), (env["DLQ_TOPIC"], 1)]
adm = admin(sasl)  # kept alive until the futures resolve
for name, fut in adm.create_topics([NewTopic(n, num_partitions=p, replication_factor=1)
                                    for n, p in topics]).items():
    fut.result(30)

# A client that does not trust our CA, and one with a wrong password, are refused and
# told why (librdkafka's error callback).
for what, conf, rx in (("an untrusted CA", dict(sasl, **{"ssl.ca.location": other_ca}),
                        r"(?i)certificate verify failed"),
                       ("a wrong password", dict(sasl, **{"sasl.password": "wrong"}),
                        r"(?i)authentication")):
    errs = []
    a = admin(dict(conf, error_cb=lambda err, errs=errs: errs.append(str(err))))
    try:
        a.list_topics(timeout=5)
        e2e.fail(f"a client with {what} got metadata")
    except KafkaException:
        pass
    harness.wait_for(lambda: a.poll(0.2) is not None and errs, 5)  # serves error_cb
    if not any(re.search(rx, x) for x in errs):
        e2e.fail(f"a client with {what}: no error matching /{rx}/ in {errs[:3]}")
    e2e.ok(f"a client with {what} gets no metadata: {errs[0][:200]}")

# ---- which librdkafka can do SCRAM with this broker ------------------------------------
def lib_version(path):
    lib = ctypes.CDLL(path)
    lib.rd_kafka_version.restype = ctypes.c_int
    lib.rd_kafka_version_str.restype = ctypes.c_char_p
    return lib.rd_kafka_version(), lib.rd_kafka_version_str().decode()


interestd = e2e.tool("interestd")
m = re.search(r"librdkafka\.so\.1 => (\S+)", run(["ldd", interestd]))
if m is None:
    e2e.fail(f"ldd {interestd}: no librdkafka.so.1")
sys_ver, sys_ver_str = lib_version(m.group(1))
scram_env = {}
if sys_ver < RDKAFKA_SCRAM_KAFKA4:
    # The same binary on a newer librdkafka (same ABI, soname librdkafka.so.1): the one
    # bundled with the confluent-kafka wheel of the project's venv.
    wheel = sorted(glob.glob(os.path.join(harness.ROOT, ".cache", "venv", "lib", "python3*",
                                          "site-packages", "confluent_kafka.libs",
                                          "librdkafka*.so*")))
    if not wheel:
        print(f"SKIP: librdkafka {sys_ver_str} cannot SCRAM with Kafka 4 and no newer one found",
              flush=True)
        sys.exit(77)
    libdir = os.path.join(tmp, "rdkafka")
    os.makedirs(libdir)
    os.symlink(wheel[-1], os.path.join(libdir, "librdkafka.so.1"))
    scram_env = {"LD_LIBRARY_PATH": libdir}
    new_ver_str = lib_version(wheel[-1])[1]
    e2e.ok(f"interestd links librdkafka {sys_ver_str} (< 2.6.1: no SCRAM with Kafka 4.x); "
           f"the SCRAM runs use the same binary on librdkafka {new_ver_str}")

# ---- interestd over SASL_SSL ----------------------------------------------------------
base = {"kafka__bootstrap__servers": bootstrap, "kafka__security__protocol": "SASL_SSL",
        "kafka__sasl__username": SCRAM_USER, "kafka__ssl__ca__location": ca_pem,
        "snapshot__every_events": 5}
scram = dict(base, kafka__sasl__mechanisms="SCRAM-SHA-512", kafka__sasl__password=SCRAM_PASSWORD)
plain = dict(base, kafka__sasl__mechanisms="PLAIN", kafka__sasl__password=PLAIN_PASSWORD)
csv_path = os.path.join(tmp, "events.csv")
rows = e2e.make_events(csv_path, items, N_USERS, N_EVENTS, seed=50)
half = N_EVENTS // 2
want_half, want = {}, {}
for i, row in enumerate(rows):
    want[row["user_id"]] = want.get(row["user_id"], 0) + 1
    if i < half:
        want_half[row["user_id"]] = want_half.get(row["user_id"], 0) + 1
r = e2e.redis_client(env)
prefix = env["REDIS_KEY_PREFIX"]
# One error line per distinct reason per minute, naming protocol, mechanism and the
# broker's reason (daemon/consumer.c consumer_auth_failed).
AUTH_RX = (r"level=error event=kafka_authentication_failed client=\S+ "
           r"security_protocol=sasl_ssl sasl_mechanism=SCRAM-SHA-512 "
           r"error=\"[^\"\n]*[Aa]uthentication[^\"\n]*\"[^\n]*action=retry[^\n]*")


def replay(skip, limit):
    e2e._run([os.path.join(harness.ROOT, "scripts", "replay"), "--bootstrap", bootstrap,
              "--topic", env["EVENTS_TOPIC"], "--framing", "single-object", "--skip", str(skip),
              "--limit", str(limit), csv_path] +
             [a for k, v in sasl.items() for a in ("-X", f"{k}={v}")])


def run_until_applied(name, keys, extra_env, skip, limit, want_now):
    d = e2e.Daemon(env, e2e.write_config(env, model, name, **keys), name,
                   extra_env=extra_env).start()
    d.wait_log(r"event=assigned .*owned=4", 90)
    replay(skip, limit)
    done, last, short = e2e.wait_applied(r, prefix, want_now, 90)
    if not done:
        d.dump()
        e2e.fail(f"{name}: events_applied short for {len(short)} users: "
                 f"{dict(list(short.items())[:5])}")
    return d


# A wrong password: a clear error, no crash, nothing applied, SIGTERM still stops it.
# The service manager's STATUS says it, /metrics counts it, and librdkafka's own lines
# come through our logger (event=kafka_log), never in its "%3|...|FAIL|" format.
import socket  # noqa: E402
import urllib.request  # noqa: E402
notify_path = os.path.join(tmp, "notify.sock")
notify_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
notify_sock.bind(notify_path)
notify_sock.settimeout(0.2)
bad = e2e.Daemon(env, e2e.write_config(env, model, "bad", metrics__listen="127.0.0.1:0", **dict(
    scram, kafka__sasl__password="not-the-password")), "bad",
    extra_env=dict(scram_env, NOTIFY_SOCKET=notify_path)).start()
if harness.wait_for(lambda: re.search(AUTH_RX, bad.current_log()), 60) is None:
    print("\n".join(x for x in bad.log_text().splitlines() if "event=kafka_log" not in x
                    and not x.startswith("%"))[-4000:], file=sys.stderr)
    e2e.fail(f"wrong SASL password: no line matching /{AUTH_RX}/ within 60 s")
line = re.search(AUTH_RX, bad.current_log()).group(0).strip()
time.sleep(5)
statuses = []
while True:
    try:
        statuses.append(notify_sock.recv(4096).decode())
    except socket.timeout:
        break
notify_sock.close()
maddr = bad.wait_log(r"event=metrics_listening addr=(\S+)", 10).group(1)
with urllib.request.urlopen(f"http://{maddr}/metrics", timeout=5) as resp:
    mtext = resp.read().decode()
alive = bad.alive()
rc = bad.stop(timeout_s=30) if alive else bad.proc.returncode
text = bad.log_text()
n_auth = len(re.findall(AUTH_RX, text))
if e2e.events_applied(r, prefix, list(want)):
    e2e.fail("events applied with a wrong SASL password")
if rc is None or rc < 0 or rc not in (0, 1, 78):
    bad.dump()
    e2e.fail(f"wrong SASL password: daemon exited {rc} (crash?)")
bad.assert_clean()
if not 1 <= n_auth <= 3:
    bad.dump()
    e2e.fail(f"{n_auth} authentication error lines in ~5 s, want 1..3 (one per distinct reason)")
if re.search(r"level=warn event=kafka_error [^\n]*_AUTHENTICATION", text):
    e2e.fail("the authentication failure is still also logged as a kafka_error warning")
status = [m for m in statuses if "STATUS=kafka authentication failed (sasl_ssl, SCRAM-SHA-512)" in m]
if not status or "READY=1" in "".join(statuses):
    e2e.fail(f"STATUS does not name the authentication failure (or READY=1 was sent): {statuses}")
m = re.search(r"^interestd_kafka_auth_failures_total (\d+)$", mtext, re.M)
if not m or int(m.group(1)) < n_auth:
    e2e.fail(f"/metrics: interestd_kafka_auth_failures_total {m and m.group(1)}, want >= {n_auth}")
# librdkafka's own format is "%LEVEL|time|FACILITY|client| text". The events consumer
# and the dead-letter/snapshot producer (daemon/consumer.c) must never print it; the
# live-items consumer (daemon/items.c) is counted apart until it sets log_kafka_cb too.
raw_all = re.findall(r"^%\d\|[^|]*\|[^|]*\|([^|]*)\|.*$", text, re.M)
raw = [c for c in raw_all if not c.startswith("interestd-items")]
kafka_log = re.findall(r"level=\w+ event=kafka_log client=\S+ facility=\S+ message=\"[^\n]*", text)
if raw or not kafka_log:
    e2e.fail(f"librdkafka lines not through our logger: {len(raw)} raw from {sorted(set(raw))}, "
             f"{len(kafka_log)} as event=kafka_log")
if len(raw_all) > len(raw):
    e2e.log(f"note: {len(raw_all) - len(raw)} raw librdkafka lines from the live-items consumer")
e2e.ok(f"wrong SASL password: {'still running after 5 s, SIGTERM: exit ' if alive else 'exited '}"
       f"{rc}; {n_auth} authentication error line(s) (counter {m.group(1)}); first: {line[:300]}")
e2e.ok(f"STATUS: {status[0].split('STATUS=', 1)[1][:200]}")
e2e.ok(f"librdkafka's own lines: {len(kafka_log)} as event=kafka_log, none raw; e.g. "
       f"{kafka_log[0][:200]}")

# First half: the stock binary and library over TLS with SASL/PLAIN.
d = run_until_applied("plain", plain, {}, 0, half, want_half)
e2e.ok(f"SASL_SSL + PLAIN (librdkafka {sys_ver_str}): {half} events applied, each user's count exact")
rc = d.stop()
if rc != 0:
    d.dump()
    e2e.fail(f"plain: SIGTERM: exit {rc}")
d.assert_clean()

# Second half, same group: SCRAM-SHA-512 over TLS.
d = run_until_applied("scram", scram, scram_env, half, N_EVENTS - half, want)
e2e.ok(f"SASL_SSL + SCRAM-SHA-512: all {N_EVENTS} events applied to {len(want)} users, "
       "each count exact")

# Snapshots were produced over the same connection settings.
from confluent_kafka import Consumer  # noqa: E402
c = Consumer(dict(sasl, **{"bootstrap.servers": bootstrap, "group.id": env["HARNESS_PREFIX"] + "snap",
                           "auto.offset.reset": "earliest", "enable.auto.commit": False}))
c.subscribe([env["SNAPSHOTS_TOPIC"]])
snaps = 0
deadline = time.monotonic() + 30
while snaps == 0 and time.monotonic() < deadline:
    msg = c.poll(0.5)
    if msg is not None and not msg.error():
        snaps += 1
c.close()
if snaps == 0:
    e2e.fail("no snapshot reached the snapshot topic over SASL_SSL")
e2e.ok("snapshots produced over SASL_SSL")

rc = d.stop(signal.SIGTERM)
if rc != 0:
    d.dump()
    e2e.fail(f"scram: SIGTERM: exit {rc}")
d.assert_clean()
e2e.ok("SIGTERM: exit 0, no sanitizer report")
