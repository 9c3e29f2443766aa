# Shared settings for the shell scripts: where the repository, the Kafka jars
# and the venv live, and the command-line conventions (cli_std). Sourced, never
# executed; sets ROOT if the caller has not.
# shellcheck shell=bash

: "${ROOT:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"

# Kafka broker version fetched by scripts/bootstrap and run by scripts/stack.
KAFKA_VERSION=${INTERESTD_KAFKA_VERSION:-4.1.1}
LOG4J_VERSION=2.24.3
KAFKA_LIBS="$ROOT/.cache/kafka/$KAFKA_VERSION/libs"
VENV_PYTHON="$ROOT/.cache/venv/bin/python"

# The command-line conventions every tool keeps (README "Command lines"), for the
# shell scripts. `cli_std USAGE [OPTION...] -- "$@"` looks at the script's
# arguments before it does: -h/--help prints "usage: USAGE" and the script's
# opening comment on stdout and exits 0; --version prints "<script> <version>"
# (the file VERSION) and exits 0; another argument starting with '-' that is not
# one of the OPTIONs is a usage error. Arguments after a "--" are not looked at.
EX_USAGE=64 # sysexits(3): a bad option or argument
cli_std() {
	local a o known
	local -a opts=()
	CLI_USAGE="usage: $1"
	shift
	while (($# > 0)) && [[ $1 != -- ]]; do
		opts+=("$1")
		shift
	done
	(($# > 0)) && shift
	for a in "$@"; do
		case $a in
		--) break ;;
		-h | --help)
			printf '%s\n' "$CLI_USAGE"
			sed -n '2,/^[^#]/{/^#/!q;s/^# \{0,1\}//;p;}' "$0"
			exit 0
			;;
		--version)
			printf '%s %s\n' "${0##*/}" "$(cat "$ROOT/VERSION")"
			exit 0
			;;
		-?*)
			known=
			for o in "${opts[@]}"; do [[ $a == "$o" ]] && known=1; done
			[[ -n $known ]] || cli_usage_error "unknown option $a"
			;;
		esac
	done
}

# cli_usage_error MESSAGE: "<script>: MESSAGE" and the usage line on stderr, exit 64.
cli_usage_error() {
	printf '%s: %s\n%s\n' "${0##*/}" "$1" "${CLI_USAGE:-}" >&2
	exit "$EX_USAGE"
}
