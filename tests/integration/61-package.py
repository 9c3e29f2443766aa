#!/usr/bin/env python3
"""make install, make uninstall and the Debian package, as an operator meets them.

`make install DESTDIR=D` puts exactly the expected files under D (daemon in
sbin, units whose ExecStart names the installed daemon, no @...@ left in any
installed text file, man pages clean under mandoc -T lint -W warning); `make uninstall`
leaves no file; a config already there is neither overwritten by install nor
removed by uninstall. `make deb` builds interestd_VERSION_ARCH.deb whose
Depends come from dpkg-shlibdeps and whose conffiles list the config, with no
lintian error or warning; dpkg installs it into a fresh root (maintainer scripts run on
that root through DPKG_ROOT): the user exists, the directories have their
group, the unit is enabled; the installed `interestd --check-config` accepts
the installed config and schemas with a test model, `interestctl model`
summarises it; a purge leaves none of the package's files."""
import atexit
import os
import shutil
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness  # noqa: E402
import interestd_e2e as e2e  # noqa: E402

SKIP = 77  # tests/run-integration's exit status for a skipped test
CMD_TIMEOUT_S = 300  # make may have to build the programs first
ROOT = harness.ROOT
build = e2e.build_dir()
daemon = e2e.tool("interestd")


def skip(why):
    print(f"SKIP: {why}")
    sys.exit(SKIP)


def run(cmd, want=0, env=None):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=CMD_TIMEOUT_S, cwd=ROOT, env=env)
    if want is not None and r.returncode != want:
        e2e.fail(f"{' '.join(cmd)}: exit {r.returncode}, want {want}:\n{r.stdout[-4000:]}")
    return r


def files_under(top):
    """Every file and symlink under top, relative to it."""
    out = set()
    for d, _, names in os.walk(top):
        for n in names:
            out.add(os.path.relpath(os.path.join(d, n), top))
    return out


needed = subprocess.run(["readelf", "-d", daemon], stdout=subprocess.PIPE, text=True,
                        timeout=60).stdout
if "san" in "".join(line for line in needed.splitlines() if "NEEDED" in line):
    skip(f"{build} is a sanitizer build: packaging one makes no sense (the plain pass runs 61)")
if os.geteuid() != 0:
    skip("not root: dpkg --root and the maintainer scripts' chown need root")
for t in ("dpkg-deb", "dpkg-shlibdeps", "dpkg-gencontrol", "systemd-sysusers",
          "systemd-tmpfiles", "deb-systemd-helper", "mandoc", "lintian"):
    if shutil.which(t) is None:
        e2e.fail(f"{t} missing (make deps installs it)")

with open(os.path.join(ROOT, "VERSION")) as f:
    version = f.read().strip()
model, _ = e2e.test_model()
tmp = tempfile.mkdtemp(prefix="interestd-package.")
atexit.register(shutil.rmtree, tmp, ignore_errors=True)
make = ["make", "--no-print-directory", f"BUILD={build}"]

# ---- make install / make uninstall -------------------------------------------
schemas = sorted(f for f in os.listdir(os.path.join(ROOT, "schemas")))
want = {
    "usr/local/sbin/interestd",
    "usr/local/bin/interestctl",
    "usr/local/bin/interest-train",
    "usr/local/bin/interest-eval",
    "usr/local/lib/systemd/system/interestd.service",
    "usr/local/lib/systemd/system/interestd@.service",
    "usr/local/lib/sysusers.d/interestd.conf",
    "usr/local/lib/tmpfiles.d/interestd.conf",
    "usr/local/share/man/man8/interestd.8",
    "usr/local/share/man/man5/interestd.conf.5",
    "usr/local/share/man/man1/interestctl.1",
    "usr/local/share/man/man1/interest-train.1",
    "usr/local/share/man/man1/interest-eval.1",
    "etc/interestd/interestd.conf",
}
want |= {f"usr/local/share/interestd/{s}" for s in schemas if s.endswith(".avsc")}
want |= {f"usr/local/share/doc/interestd/schemas/{s}" for s in schemas if s.endswith(".md")}

dest = os.path.join(tmp, "dest")
run(make + ["install", f"DESTDIR={dest}"])
got = files_under(dest)
if got != want:
    e2e.fail(f"make install: missing {sorted(want - got)}, unexpected {sorted(got - want)}")
for p in ("usr/local/sbin/interestd", "usr/local/bin/interestctl"):
    if not os.access(os.path.join(dest, p), os.X_OK):
        e2e.fail(f"{p} is not executable")
for p in want:
    with open(os.path.join(dest, p), "rb") as f:
        data = f.read()
    if b"\0" not in data and (b"@SBINDIR@" in data or b"@SYSCONFDIR@" in data
                              or b"@DATADIR@" in data or b"@CONFIG_KEYS@" in data):
        e2e.fail(f"{p}: a @...@ placeholder was left in")
unit = os.path.join(dest, "usr/local/lib/systemd/system/interestd.service")
with open(unit) as f:
    text = f.read()
for line in ("ExecStart=/usr/local/sbin/interestd -c /etc/interestd/interestd.conf",
             "Documentation=man:interestd(8) man:interestd.conf(5)"):
    if line not in text.splitlines():
        e2e.fail(f"installed interestd.service lacks '{line}'")
with open(os.path.join(dest, "usr/local/share/man/man5/interestd.conf.5")) as f:
    page = f.read()
if ".It Cm redis.top_n" not in page or ".It Cm model.path" not in page:
    e2e.fail("interestd.conf(5) lacks the keys of interestd --help-config=mdoc")
mans = sorted(os.path.join(dest, p) for p in want if "/man/man" in p)
r = run(["mandoc", "-T", "lint", "-W", "warning"] + mans, want=None)
if r.returncode != 0 or r.stdout.strip():
    e2e.fail(f"mandoc -T lint on the installed pages:\n{r.stdout}")
e2e.ok(f"make install: {len(got)} files as expected, units name /usr/local/sbin/interestd, "
       "man pages lint-clean")

run(make + ["uninstall", f"DESTDIR={dest}"])
left = files_under(dest)
if left:
    e2e.fail(f"make uninstall left {sorted(left)}")
e2e.ok("make uninstall: no installed file left")

conf = os.path.join(dest, "etc/interestd/interestd.conf")
os.makedirs(os.path.dirname(conf))
mine = "# the operator's own\ngroup.id = mine\n"
with open(conf, "w") as f:
    f.write(mine)
r = run(make + ["install", f"DESTDIR={dest}"])
with open(conf) as f:
    if f.read() != mine:
        e2e.fail("make install overwrote an existing interestd.conf")
if "keeping the existing" not in r.stdout:
    e2e.fail(f"make install did not say it kept the config:\n{r.stdout[-2000:]}")
r = run(make + ["uninstall", f"DESTDIR={dest}"])
if "keeping" not in r.stdout:
    e2e.fail(f"make uninstall did not say it kept the edited config:\n{r.stdout[-2000:]}")
left = files_under(dest)
if left != {"etc/interestd/interestd.conf"}:
    e2e.fail(f"make uninstall with an edited config left {sorted(left)}")
e2e.ok("an existing config: not overwritten by install, kept by uninstall")

# ---- make deb -------------------------------------------------------------------
run(make + ["deb"])
arch = run(["dpkg", "--print-architecture"]).stdout.strip()
deb = os.path.join(build, f"interestd_{version}_{arch}.deb")
if not os.path.exists(deb):
    e2e.fail(f"make deb wrote no {deb}")
depends = run(["dpkg-deb", "-f", deb, "Depends"]).stdout
for lib in ("libc6", "librdkafka1", "libhiredis", "libopenblas", "libsystemd0"):
    if lib not in depends:
        e2e.fail(f"Depends lacks {lib} (dpkg-shlibdeps): {depends}")
conffiles = run(["dpkg-deb", "--info", deb, "conffiles"]).stdout.split()
if conffiles != ["/etc/interestd/interestd.conf"]:
    e2e.fail(f"conffiles: {conffiles}")
r = run(["lintian", "--no-tag-display-limit", deb], want=None)
bad = [line for line in r.stdout.splitlines() if line[:2] in ("E:", "W:")]
if r.returncode != 0 or bad:
    e2e.fail(f"lintian: exit {r.returncode}\n" + "\n".join(bad or r.stdout.splitlines()))
e2e.ok("lintian: no error, no warning")
e2e.ok(f"make deb: {os.path.basename(deb)}, Depends {depends.strip()}")

# ---- the package in a fresh root ------------------------------------------------
root = os.path.join(tmp, "root")
for d in ("var/lib/dpkg/updates", "var/lib/dpkg/info"):
    os.makedirs(os.path.join(root, d))
open(os.path.join(root, "var/lib/dpkg/status"), "w").close()
# The libraries are the host's, not in this root's database: --force-depends.
# The maintainer scripts run outside the root with DPKG_ROOT set.
dpkg = ["dpkg", f"--root={root}", "--force-depends", "--force-script-chrootless",
        f"--log={os.path.join(tmp, 'dpkg.log')}"]
run(dpkg + ["-i", deb])
with open(os.path.join(root, "etc/passwd")) as f:
    if not any(line.startswith("interestd:") for line in f):
        e2e.fail("postinst created no interestd user (systemd-sysusers)")
with open(os.path.join(root, "etc/group")) as f:
    gid = next(int(line.split(":")[2]) for line in f if line.startswith("interestd:"))
for p, mode in (("etc/interestd", 0o750), ("etc/interestd/interestd.conf", 0o640),
                ("var/lib/interestd/models", 0o750)):
    st = os.stat(os.path.join(root, p))
    if stat.S_IMODE(st.st_mode) != mode or st.st_gid != gid:
        e2e.fail(f"/{p}: mode {stat.S_IMODE(st.st_mode):o} gid {st.st_gid}, "
                 f"want {mode:o} gid {gid} (systemd-tmpfiles)")
link = os.path.join(root, "etc/systemd/system/multi-user.target.wants/interestd.service")
if not os.path.islink(link) or not os.readlink(link).endswith("/systemd/system/interestd.service"):
    e2e.fail("postinst did not enable interestd.service (deb-systemd-helper)")
e2e.ok("dpkg -i into a fresh root: user interestd, /etc/interestd 0750 root:interestd, "
       "unit enabled")

inst_conf = os.path.join(root, "etc/interestd/interestd.conf")
avsc = os.path.join(root, "usr/share/interestd/behaviour_event.avsc")
installed_d = os.path.join(root, "usr/sbin/interestd")
r = run([installed_d, "--check-config", "-c", inst_conf, "-o", f"model.path={model}",
         "-o", f"schema.reader={avsc}", "-o", f"schema.writers=1:{avsc}"])
if r.stdout.strip() != "configuration OK":
    e2e.fail(f"installed interestd --check-config: {r.stdout!r}")
r = run([installed_d, "--check-config", "-c", inst_conf], want=78)
if "model.path" not in r.stdout:
    e2e.fail(f"installed config without a model: {r.stdout!r}")
e2e.ok("installed interestd --check-config: the installed config and schemas with the test "
       "model pass; without a model file, exit 78 naming model.path")
r = run([os.path.join(root, "usr/bin/interestctl"), "model", model])
if "kind        model" not in r.stdout or "checksum OK" not in r.stdout:
    e2e.fail(f"installed interestctl model: {r.stdout[:1000]!r}")
e2e.ok("installed interestctl model: a valid model summarised")

run(dpkg + ["--purge", "interestd"])
left = {p for p in files_under(root) if not p.startswith("var/lib/dpkg/")}
stray = [os.path.relpath(os.path.join(d, n), root)
         for d, dirs, names in os.walk(root) for n in dirs + names
         if "interestd" in n and "/var/lib/dpkg" not in d]
if stray:
    e2e.fail(f"dpkg --purge left {sorted(stray)}")
e2e.ok(f"dpkg --purge: none of the package's files left (kept: {sorted(left)})")
print("PASS")
