#!/usr/bin/env bash
# Install the rolecall worker into a base image (or onto one machine).
#
#   sudo deploy/linux/install.sh [--from PATH] [--prefix DIR] [--etc DIR] [--systemd-dir DIR]
#                                [--python PY] [--pip-option OPT]... [--no-enable]
#
# What it does, idempotently (run it again to upgrade):
#   1. makes PREFIX a Python virtual environment (default /opt/rolecall), so the agent and its
#      dependencies never touch the distribution's Python;
#   2. pip-installs rolecall from PATH: a wheel, an sdist, or a source checkout (default: the
#      checkout this script lives in); anything else is a requirement for pip, such as
#      rolecall==1.2.3 with --pip-option=--index-url=...;
#   3. writes ETC/worker.env (default /etc/rolecall), mode 0600, from a commented template,
#      but only if it does not exist yet: an operator's or cloud-init's settings survive;
#   4. installs the systemd unit into SYSTEMD_DIR (default /etc/systemd/system) with the paths
#      above, and enables it (unless --no-enable) WITHOUT starting it.
#
# It deliberately does not start the agent: a first start creates /var/lib/rolecall with an
# incarnation id, and an image captured with it makes every instance share that incarnation
# and skip its baseline. Check a bake with `PREFIX/bin/rolecall worker --check` instead.
#
# --pip-option passes one option to `pip install` (repeat it): a mirror
# (--pip-option=--index-url=https://...), an offline wheelhouse
# (--pip-option=--no-index --pip-option=--find-links=/mnt/wheels), or --no-deps.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

prefix=/opt/rolecall
from="$repo"
etc=/etc/rolecall
systemd_dir=/etc/systemd/system
python=python3
enable=1
pip_opts=()

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e 's/^# \{0,1\}//' -e '/^set -euo/d'
}

die() {
    echo "install.sh: $*" >&2
    exit 2
}

need_value() {
    if [ "$#" -lt 2 ] || [ -z "$2" ]; then
        die "$1 needs a value"
    fi
}

while [ "$#" -gt 0 ]; do
    case "$1" in
        --prefix) need_value "$@"; prefix="$2"; shift 2 ;;
        --prefix=*) prefix="${1#*=}"; shift ;;
        --from) need_value "$@"; from="$2"; shift 2 ;;
        --from=*) from="${1#*=}"; shift ;;
        --etc) need_value "$@"; etc="$2"; shift 2 ;;
        --etc=*) etc="${1#*=}"; shift ;;
        --systemd-dir) need_value "$@"; systemd_dir="$2"; shift 2 ;;
        --systemd-dir=*) systemd_dir="${1#*=}"; shift ;;
        --python) need_value "$@"; python="$2"; shift 2 ;;
        --python=*) python="${1#*=}"; shift ;;
        --pip-option) need_value "$@"; pip_opts+=("$2"); shift 2 ;;
        --pip-option=*) pip_opts+=("${1#*=}"); shift ;;
        --no-enable) enable=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

# Absolute paths: they are written into the unit file.
abspath() {
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s/%s\n' "$(pwd)" "$1" ;;
    esac
}
prefix="$(abspath "$prefix")"
etc="$(abspath "$etc")"
systemd_dir="$(abspath "$systemd_dir")"
if [ -e "$from" ]; then
    from="$(abspath "$from")"
fi

command -v "$python" >/dev/null 2>&1 || die "no Python interpreter '$python' (use --python)"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || die "$python is older than Python 3.10"

echo "==> virtual environment $prefix"
if [ ! -x "$prefix/bin/python" ]; then
    "$python" -m venv "$prefix" \
        || die "cannot create a virtual environment (Debian/Ubuntu: apt-get install python3-venv)"
fi

echo "==> pip install $from"
"$prefix/bin/python" -m pip install --disable-pip-version-check --no-input --quiet \
    --upgrade ${pip_opts[@]+"${pip_opts[@]}"} "$from"
"$prefix/bin/rolecall" --help >/dev/null || die "$prefix/bin/rolecall does not run"

if [ -f "$repo/docs/deploy.md" ]; then
    install -d -m 0755 "$prefix/share/doc/rolecall"
    install -m 0644 "$repo/docs/deploy.md" "$prefix/share/doc/rolecall/deploy.md"
fi

echo "==> settings $etc/worker.env"
install -d -m 0755 "$etc"
if [ -e "$etc/worker.env" ]; then
    echo "    kept (already present)"
else
    (
        umask 077
        cat >"$etc/worker.env" <<'ENV'
# rolecall worker settings, read by systemd (EnvironmentFile=): KEY=VALUE, no `export`.
# Every setting has a ROLECALL_ name; see `rolecall worker --help` and docs/deploy.md.

# --- who this instance is: from Azure instance metadata, so one image serves every VM ------
# The VM name is the instance name; the VM's (or scale set's) `rolecall-role` tag is the role.
ROLECALL_USE_IMDS=true
# Or name them explicitly (a VM outside Azure):
#ROLECALL_ROLE=web
#ROLECALL_INSTANCE=web-0

# --- where storage is ---------------------------------------------------------------------
ROLECALL_NAMESPACE=rc
# Managed identity (recommended; the account then needs no keys at all):
ROLECALL_ACCOUNT_NAME=
# Client id of the worker's user-assigned identity; required when the VM has more than one.
#AZURE_CLIENT_ID=
# Or a SAS bundle file, or (development only) a connection string:
#ROLECALL_SAS_FILE=/etc/rolecall/worker.sas.json
#AZURE_STORAGE_CONNECTION_STRING=

# --- behaviour ----------------------------------------------------------------------------
# Controller public keys whose signatures jobs and baselines must carry (JSON list):
#ROLECALL_TRUSTED_KEYS='["/etc/rolecall/controller.pub"]'
# Run when a step exits 3010 or 194 (reboot required):
#ROLECALL_REBOOT_COMMAND="systemctl reboot"
ROLECALL_LOG_LEVEL=info
ENV
    )
fi
chmod 0600 "$etc/worker.env"

echo "==> systemd unit $systemd_dir/rolecall-worker.service"
install -d -m 0755 "$systemd_dir"
unit_tmp="$(mktemp)"
trap 'rm -f "$unit_tmp"' EXIT
# Rewrite only the installation paths; the state directory stays /var/lib/rolecall
# (StateDirectory=), which is where the agent looks by default.
sed_escape() { printf '%s' "$1" | sed -e 's/[&#\\]/\\&/g'; }
sed -e "s#/opt/rolecall/#$(sed_escape "$prefix")/#g" -e "s#/etc/rolecall/#$(sed_escape "$etc")/#g" \
    "$here/rolecall-worker.service" >"$unit_tmp"
install -m 0644 "$unit_tmp" "$systemd_dir/rolecall-worker.service"

if [ "$enable" = 1 ]; then
    echo "==> systemctl enable rolecall-worker.service (not started)"
    systemctl daemon-reload
    systemctl enable rolecall-worker.service
fi

cat <<DONE
rolecall installed: $prefix/bin/rolecall
Next: set ROLECALL_ACCOUNT_NAME (and AZURE_CLIENT_ID) in $etc/worker.env, or let cloud-init
write that file; then check without claiming anything:
  $prefix/bin/rolecall worker --check --role ROLE --instance bake-check
Before capturing an image, make sure /var/lib/rolecall does not exist.
DONE
