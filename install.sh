#!/usr/bin/env bash
# Sets a Debian host up for minipaas and puts the example app live.
#
#   ./install.sh                   host packages, Docker engine, nginx, minipaas in /opt/minipaas,
#                                  the Node.js base image, `minipaas init`, then examples/hello live
#   ./install.sh --deps-only       everything the test suite needs, without init or the example app
#
# Settings come from the environment (MINIPAAS_HOME, MINIPAAS_DOMAIN, MINIPAAS_HTTP_PORT,
# MINIPAAS_NGINX, MINIPAAS_NGINX_USER, MINIPAAS_BUILD_CA) and are written to
# $MINIPAAS_HOME/settings.toml by init, which also makes the home root's alone (docs/security.md).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
prefix=${MINIPAAS_PREFIX:-/opt/minipaas}
deps_only=0
[ "${1:-}" = "--deps-only" ] && deps_only=1

say() { printf -- '-----> %s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

# Root runs it as it is (a bare Debian host's root has no sudo); anyone else goes through sudo, keeping
# the MINIPAAS_* settings.
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || die "run as root (no sudo here to become root with)"
  keep=$(env | sed -n 's/^\(MINIPAAS_[A-Z_]*\)=.*/\1/p' | paste -sd, -)
  exec sudo ${keep:+--preserve-env="$keep"} -- "$0" "$@"
fi

# --- host packages ----------------------------------------------------------------------------
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v nginx >/dev/null || need+=(nginx)
# The routing table lives in nginx's shared memory, changed by Lua without a reload (docs/architecture.md).
[ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ] || need+=(libnginx-mod-http-lua)
command -v git >/dev/null || need+=(git)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v wrk >/dev/null || need+=(wrk)
command -v curl >/dev/null || need+=(curl)
# Log drains: one rsyslogd per home ships the apps' records to them (minipaas/running/drains.py); its service is
# not needed (policy-rc.d or systemd may start it: it then only serves the host's own syslog).
[ -x /usr/sbin/rsyslogd ] || need+=(rsyslog)
command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh-keygen >/dev/null || need+=(openssh-client)
command -v sudo >/dev/null || need+=(sudo)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  say "Installing ${need[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

# --- Docker engine: systemd when there is one, else dockerd in the background ------------------
if ! docker info >/dev/null 2>&1; then
  if [ -d /run/systemd/system ]; then
    systemctl enable --now docker >/dev/null
  else
    say "Starting dockerd (no systemd here; log in /var/log/minipaas-dockerd.log)"
    setsid nohup dockerd >/var/log/minipaas-dockerd.log 2>&1 < /dev/null &
  fi
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || die "the Docker engine did not start; see /var/log/minipaas-dockerd.log"
fi

# --- minipaas itself, in its own virtualenv -------------------------------------------------------
if [ ! -x "$prefix/venv/bin/python" ]; then
  say "Creating $prefix/venv"
  python3 -m venv "$prefix/venv"
fi
say "Installing minipaas from $here"
"$prefix/venv/bin/python" -m pip install -q --upgrade pip >/dev/null
"$prefix/venv/bin/python" -m pip install -q -e "$here[test]"
ln -sf "$prefix/venv/bin/minipaas" /usr/local/bin/minipaas

# --- the build CA: on a host whose HTTPS goes through an intercepting proxy ------------------------
if [ -z "${MINIPAAS_BUILD_CA:-}" ] && [ -n "${NODE_EXTRA_CA_CERTS:-}" ] && [ -f "$NODE_EXTRA_CA_CERTS" ]; then
  export MINIPAAS_BUILD_CA=$NODE_EXTRA_CA_CERTS
  say "Builds will trust $MINIPAAS_BUILD_CA (from NODE_EXTRA_CA_CERTS)"
fi

# --- the Node.js base image -----------------------------------------------------------------------
stack_home=$(mktemp -d)
MINIPAAS_HOME=$stack_home minipaas stack:build
rm -rf "$stack_home"

[ $deps_only = 1 ] && { say "Dependencies ready"; exit 0; }

# --- this host ------------------------------------------------------------------------------------
export MINIPAAS_HOME=${MINIPAAS_HOME:-/var/lib/minipaas}
minipaas init
# Apps and nginx back as they were recorded (a re-run after a reboot of a host without systemd, where
# nothing else restarts them); on a new host this only starts nginx. Also the watcher and the web dashboard
# (`dashboard.<domain>`, the `dashboard-domain` setting; log in with `ssh paas@HOST dashboard:login`).
minipaas ps:restore
# This instance's jobs on the host, named after it (`minipaas-restore.service` for the default instance,
# `minipaas-<instance>-restore.service` for another; a cron job without systemd): `ps:restore` after boot and
# after every start of the Docker engine, and daily the services' scheduled backups then the renewal of
# certificates expiring within 30 days. A unit of this name that serves another home is refused.
minipaas host-units

# --- ssh access: the paas user, whose every key runs only `minipaas ssh-command` ----------------------
id paas >/dev/null 2>&1 || useradd --system --create-home --home-dir /home/paas --shell /bin/sh paas
install -d -m 700 -o paas -g paas /home/paas/.ssh
[ -f /home/paas/.ssh/authorized_keys ] || install -m 600 -o paas -g paas /dev/null /home/paas/.ssh/authorized_keys
# The forced command runs minipaas as root through sudo, with nothing but the ssh command passed on, and
# exactly `ssh-command --home <this home> --user NAME --fingerprint SHA256:...` as arguments (a regular
# expression: sudo >= 1.9.10), in a rule of this instance's own (/etc/sudoers.d/minipaas, or
# minipaas-<instance>), installed once `visudo -c` accepts it.
minipaas sudoers-rule --account paas --program /usr/local/bin/minipaas --install
install -d /etc/ssh/sshd_config.d
cat >/etc/ssh/sshd_config.d/minipaas.conf <<'SSHD'
# minipaas: the paas account is reached with keys only, and forwards nothing.
Match User paas
    PasswordAuthentication no
    KbdInteractiveAuthentication no
    AllowTcpForwarding no
    AllowAgentForwarding no
    AllowStreamLocalForwarding no
    X11Forwarding no
    PermitTunnel no
SSHD
grep -q '^Include /etc/ssh/sshd_config.d/\*.conf' /etc/ssh/sshd_config \
  || sed -i '1i Include /etc/ssh/sshd_config.d/*.conf' /etc/ssh/sshd_config
if [ -d /run/systemd/system ]; then
  systemctl enable --now ssh >/dev/null && systemctl reload ssh
else
  install -d -m 755 /run/sshd
  if pid=$(cat /run/sshd.pid 2>/dev/null) && kill -0 "$pid" 2>/dev/null; then kill -HUP "$pid"; else /usr/sbin/sshd; fi
fi
say "ssh: add keys with \`minipaas ssh-keys:add NAME < NAME.pub\`, then git remote add paas paas@$(hostname -f 2>/dev/null || hostname):APP"

# --- the example app --------------------------------------------------------------------------------
minipaas apps:list --json | grep -q '"name": "hello"' || minipaas apps:create hello
work=$(mktemp -d)
cp -r "$here/examples/hello/." "$work/"
git -C "$work" init -q -b master
git -C "$work" -c user.name=minipaas -c user.email=install@minipaas add -A
git -C "$work" -c user.name=minipaas -c user.email=install@minipaas commit -q -m "example app"
git -C "$work" push "$MINIPAAS_HOME/repos/hello.git" master --force
rm -rf "$work"

domain=$(minipaas domains hello | head -n 1)
port=${MINIPAAS_HTTP_PORT:-80}
url="http://$domain$([ "$port" = 80 ] || echo ":$port")/"
curl -fsS --max-time 10 --resolve "$domain:$port:127.0.0.1" "$url" >/dev/null || die "the example app does not answer at $url"
say "The example app is live at $url"
echo "       try: curl --resolve $domain:$port:127.0.0.1 $url"
