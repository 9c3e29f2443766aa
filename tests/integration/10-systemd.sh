#!/usr/bin/env bash
# The systemd files are valid and the service stays locked down:
# `systemd-analyze verify` is silent on both units, `systemd-analyze security`
# rates each at exposure <= 2.0, sysusers/tmpfiles snippets apply in a scratch
# root, and the example config only uses keys declared in daemon/config.h.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SD=$ROOT/systemd
MAX_EXPOSURE=2.0
command -v systemd-analyze >/dev/null || { echo "FAIL: systemd-analyze missing (make deps installs systemd)"; exit 1; }

tmp=$(mktemp -d /tmp/interestd-systemd.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() {
	echo "FAIL: $*"
	exit 1
}

# The units are templates that make install fills in: here with /etc, and
# (verify insists that ExecStart exists) the built daemon or a stand-in.
bin=${BUILD_DIR:-$ROOT/build}/interestd
[[ -x $bin ]] || { bin=$tmp/interestd && cp /bin/true "$bin"; }
render() { sed -e "s|@SBINDIR@/interestd|$bin|g" -e 's|@SYSCONFDIR@|/etc|g' "$1" >"$2"; }
render "$SD/interestd.service" "$tmp/interestd.service"
render "$SD/interestd@.service" "$tmp/interestd@.service"
render "$SD/interestd@.service" "$tmp/interestd@example.service"
render "$SD/interestd.tmpfiles" "$tmp/interestd.tmpfiles"

for unit in interestd.service interestd@example.service; do
	# --man=no: the units' man: pages are installed by make install, not here
	# (61-package checks them).
	out=$(systemd-analyze verify --man=no "$tmp/$unit" 2>&1) || fail "verify $unit: $out"
	[[ -z $out ]] || fail "verify $unit printed warnings: $out"
	echo "ok: systemd-analyze verify $unit"

	out=$(systemd-analyze security --offline=yes "$tmp/$unit" 2>&1) || fail "security $unit: $out"
	score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$out")
	[[ -n $score ]] || fail "no exposure level in: $out"
	awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s <= m) }' ||
		fail "$unit exposure $score > $MAX_EXPOSURE: $(grep '✗' <<<"$out")"
	echo "ok: $unit exposure level $score (<= $MAX_EXPOSURE)"
done

# Settings the daemon relies on, in both units.
for unit in interestd.service interestd@.service; do
	for want in Type=notify RestartPreventExitStatus=78 Restart=on-failure WatchdogSec=30 \
		'ExecReload=/bin/kill -HUP $MAINPID' User=interestd MemoryDenyWriteExecute=yes; do
		grep -qxF "$want" "$SD/$unit" || fail "$unit lacks $want"
	done
done
grep -qF 'ExecStart=@SBINDIR@/interestd -c @SYSCONFDIR@/interestd/%i.conf' "$SD/interestd@.service" ||
	fail "interestd@.service does not read SYSCONFDIR/interestd/%i.conf"
echo "ok: required settings present"

# sysusers and tmpfiles snippets apply to a scratch root.
mkdir -p "$tmp/root/etc"
systemd-sysusers --root="$tmp/root" "$SD/interestd.sysusers" ||
	fail "systemd-sysusers rejected interestd.sysusers"
grep -q '^interestd:' "$tmp/root/etc/passwd" || fail "sysusers created no interestd user"
out=$(systemd-tmpfiles --root="$tmp/root" --create "$tmp/interestd.tmpfiles" 2>&1) ||
	fail "systemd-tmpfiles: $out"
[[ -z $out ]] || fail "systemd-tmpfiles warned: $out"
[[ $(stat -c %a "$tmp/root/var/lib/interestd/models") == 750 ]] || fail "models dir mode"
[[ -d $tmp/root/etc/interestd ]] || fail "tmpfiles created no /etc/interestd"
echo "ok: sysusers and tmpfiles snippets apply"

# Every key in the example config is one daemon/config.h declares.
if [[ -f $ROOT/daemon/config.h ]]; then
	while IFS= read -r key; do
		[[ $key == kafka.* ]] && continue
		grep -qE "/\* $key([ *:,]|$)" "$ROOT/daemon/config.h" ||
			fail "example config key '$key' is not in daemon/config.h"
	done < <(sed -n 's/^#\{0,1\}\([a-z_.]*\) *=.*/\1/p' "$SD/interestd.conf.example")
	echo "ok: example config keys match daemon/config.h"
fi
