#!/usr/bin/env bash
# Install the rolecall worker into a base image (or onto one machine).
#
#   sudo deploy/linux/install.sh [--from PATH] [--prefix DIR] [--etc DIR] [--systemd-dir DIR]
#                                [--python PY] [--pip-option OPT]... [--no-enable]
#                                (--trusted-key FILE.pub | --accept-unsigned)
#
# What it does, idempotently (run it again to install another version, or to repair one):
#   1. lays PREFIX (default /opt/rolecall) out for side-by-side agent versions, so that an
#      agent can later upgrade itself while the version before stays installed:
#        PREFIX/versions/<V>/  one Python virtual environment per agent version, so the agent
#                              and its dependencies never touch the distribution's Python
#        PREFIX/launch.py      the launcher (rolecall/launch.py, stdlib only): starts the
#                              current version; switches back by itself when an upgrade does
#                              not check in. Agent upgrades never replace it.
#        PREFIX/agent.json     which version is current (and previous, pending, failed)
#        PREFIX/bin/rolecall   `exec PYTHON -I PREFIX/launch.py "$@"`: what the service runs,
#                              and what people run (`rolecall worker --check`)
#   2. pip-installs rolecall from PATH into PREFIX/versions/<its version> (built under a
#      temporary name, then renamed): a wheel, an sdist, or a source checkout (default: the
#      checkout this script lives in); anything else is a requirement for pip, such as
#      rolecall==1.2.3 with --pip-option=--index-url=...; the version installed becomes
#      current, and the one before it stays installed as previous;
#   3. writes ETC/worker.env (default /etc/rolecall), mode 0600, from a commented template,
#      but only if it does not exist yet: an operator's or cloud-init's settings survive;
#      --trusted-key copies the controller's public key (`rolecall keys generate --out FILE`
#      makes FILE.pub) to ETC/controller.pub, which the new worker.env trusts. One of it and
#      --accept-unsigned (development only: the agent then runs unsigned jobs) is required
#      for a new worker.env: an agent trusting no key refuses to start;
#   4. installs the systemd unit into SYSTEMD_DIR (default /etc/systemd/system) with the paths
#      above, and enables it (unless --no-enable) WITHOUT starting it.
#
# PYTHON (--python, default python3) is the base interpreter: it makes every version's
# virtual environment, now and when the agent upgrades itself, and it runs the launcher.
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
trusted_key=""
accept_unsigned=0

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
        --trusted-key) need_value "$@"; trusted_key="$2"; shift 2 ;;
        --trusted-key=*) trusted_key="${1#*=}"; shift ;;
        --accept-unsigned) accept_unsigned=1; shift ;;
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

if [ -n "$trusted_key" ]; then
    [ "$accept_unsigned" = 0 ] || die "--trusted-key and --accept-unsigned exclude each other"
    grep -q -- '-----BEGIN PUBLIC KEY-----' "$trusted_key" 2>/dev/null \
        || die "$trusted_key is not a PEM public key (the .pub that \`rolecall keys generate\` writes)"
elif [ "$accept_unsigned" = 0 ] && [ ! -e "$etc/worker.env" ]; then
    die "give --trusted-key FILE.pub (the controller's public key; \`rolecall keys generate --out FILE\` makes one) or --accept-unsigned (development only)"
fi

command -v "$python" >/dev/null 2>&1 || die "no Python interpreter '$python' (use --python)"
python="$(abspath "$(command -v "$python")")"  # written into agent.json and bin/rolecall
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || die "$python is older than Python 3.10"

versions="$prefix/versions"
staging="$versions/.install-$$"
unit_tmp=""
cleanup() { rm -rf "$staging" ${unit_tmp:+"$unit_tmp"}; }
trap cleanup EXIT
install -d -m 0755 "$prefix" "$versions" "$prefix/bin"

echo "==> virtual environment (staged in $staging)"
"$python" -m venv "$staging" \
    || die "cannot create a virtual environment (Debian/Ubuntu: apt-get install python3-venv)"

echo "==> pip install $from"
"$staging/bin/python" -m pip install --disable-pip-version-check --no-input --quiet \
    --upgrade ${pip_opts[@]+"${pip_opts[@]}"} "$from"
version="$("$staging/bin/python" -I -c 'import rolecall; print(rolecall.__version__)')" \
    || die "rolecall did not install"
case "$version" in
    [0-9]*) ;;
    *) die "unexpected rolecall version '$version'" ;;
esac
case "$version" in
    */*|*\\*) die "unexpected rolecall version '$version'" ;;
esac
target="$versions/$version"
echo "==> $target"
# Reinstalling a version replaces it. Renaming keeps the venv working: the launcher starts it
# as `python -I -m rolecall`, never through a script that names the temporary path.
rm -rf "$target"
mv "$staging" "$target"
launcher="$("$target/bin/python" -I -c 'import rolecall.launch as l; print(l.__file__)')" \
    || die "rolecall $version has no launcher (rolecall/launch.py): it cannot run side by side"
install -m 0644 "$launcher" "$prefix/launch.py"
"$python" -I "$prefix/launch.py" --record-install "$version"
quote() { printf "'%s'" "$(printf '%s' "$1" | sed -e "s/'/'\\\\''/g")"; }
cat >"$prefix/bin/rolecall.tmp" <<WRAPPER
#!/bin/sh
# rolecall: the launcher starts the current agent version (see $prefix/agent.json).
exec $(quote "$python") -I $(quote "$prefix/launch.py") "\$@"
WRAPPER
chmod 0755 "$prefix/bin/rolecall.tmp"
mv "$prefix/bin/rolecall.tmp" "$prefix/bin/rolecall"
# From / : `python -m` would import a rolecall checkout in the working directory instead.
(cd / && "$target/bin/python" -m rolecall --help >/dev/null) || die "rolecall $version does not run"

if [ -f "$repo/docs/deploy.md" ]; then
    install -d -m 0755 "$prefix/share/doc/rolecall"
    install -m 0644 "$repo/docs/deploy.md" "$prefix/share/doc/rolecall/deploy.md"
fi

echo "==> settings $etc/worker.env"
install -d -m 0755 "$etc"
if [ -n "$trusted_key" ]; then
    install -m 0644 "$trusted_key" "$etc/controller.pub"
    echo "    trusted key $etc/controller.pub"
fi
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
# Run when a step exits 3010 or 194 (reboot required):
#ROLECALL_REBOOT_COMMAND="systemctl reboot"
# The role's sealing key (rolecall keys seal-generate ROLE): opens jobs' sealed secrets
#ROLECALL_SEALING_KEY=/etc/rolecall/sealing.pem
ROLECALL_LOG_LEVEL=info
# Controller public keys whose signatures jobs and baselines must carry (JSON list); an
# agent with none refuses to start unless ROLECALL_ACCEPT_UNSIGNED=true (development only):
ENV
        if [ "$accept_unsigned" = 1 ]; then
            echo "ROLECALL_ACCEPT_UNSIGNED=true" >>"$etc/worker.env"
        else
            echo "ROLECALL_TRUSTED_KEYS='[\"$etc/controller.pub\"]'" >>"$etc/worker.env"
        fi
    )
fi
chmod 0600 "$etc/worker.env"

echo "==> systemd unit $systemd_dir/rolecall-worker.service"
install -d -m 0755 "$systemd_dir"
unit_tmp="$(mktemp)"
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
rolecall $version installed: $prefix/bin/rolecall (versions in $versions)
Next: set ROLECALL_ACCOUNT_NAME (and AZURE_CLIENT_ID) in $etc/worker.env, or let cloud-init
write that file; then check without claiming anything:
  $prefix/bin/rolecall worker --check --role ROLE --instance bake-check
Before capturing an image, make sure /var/lib/rolecall does not exist.
DONE
