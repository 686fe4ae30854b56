#!/usr/bin/env bash
# Installs ketch as a systemd service on linux x86_64: the binary, a `ketch` system user, its
# data dir under /var/lib/ketch, the unit and the environment file, then `systemctl
# daemon-reload`. It does not start the service (the last lines say how).
#
# usage: scripts/deploy/install.sh [--dry-run] [--binary PATH] [--prefix DIR]
#   --binary PATH  install this release binary instead of building one (cargo build --release -p ketch)
#   --prefix DIR   where the binary goes (DIR/bin/ketch; default /usr/local); the unit follows it
#   --dry-run      print every command it would run, run none (works as any user)
#   --self-check   run this script's own checks (dry-run transcripts, systemd-analyze verify); exit 0 if all hold
# Needs root, except for --dry-run and --self-check. See docs/deploy.md.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
UNIT_SRC="$HERE/ketch.service"
ENV_SRC="$HERE/ketch.env"
UNIT_DEST=/etc/systemd/system/ketch.service
ENV_DEST=/etc/ketch/ketch.env
DATA_DIR=/var/lib/ketch
SERVICE_USER=ketch
DEFAULT_BIN=/usr/local/bin/ketch

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }

# Prints the command in dry-run mode, runs it otherwise.
run() {
  if [[ $DRY_RUN == 1 ]]; then
    printf '+'; printf ' %q' "$@"; printf '\n'
  else
    "$@"
  fi
}

parse_args() {
  DRY_RUN=0; BINARY=""; PREFIX=/usr/local; SELF_CHECK=0
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --dry-run) DRY_RUN=1 ;;
      --self-check) SELF_CHECK=1 ;;
      --binary) BINARY="${2:?--binary needs a path}"; shift ;;
      --prefix) PREFIX="${2:?--prefix needs a directory}"; shift ;;
      -h|--help) usage; exit 0 ;;
      *) echo "install.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
  done
  BIN_DEST="$PREFIX/bin/ketch"
}

check_platform() {
  local os arch
  os="$(uname -s)"; arch="$(uname -m)"
  if [[ $os != Linux || $arch != x86_64 ]]; then
    echo "install.sh: ketch's service install is for linux x86_64, this is $os $arch" >&2
    exit 1
  fi
}

# Sets BINARY to the release binary to install, building it when none was given.
pick_binary() {
  if [[ -n $BINARY ]]; then
    if [[ ! -x $BINARY ]]; then
      echo "install.sh: $BINARY is not an executable file" >&2
      exit 1
    fi
    return
  fi
  local target="${CARGO_TARGET_DIR:-$REPO/target}"
  run cargo build --release -p ketch --manifest-path "$REPO/Cargo.toml"
  BINARY="$target/release/ketch"
}

create_user() {
  if id -u "$SERVICE_USER" >/dev/null 2>&1; then
    echo "user $SERVICE_USER exists"
  else
    run useradd --system --user-group --home-dir "$DATA_DIR" --no-create-home \
      --shell /usr/sbin/nologin --comment "ketch key-value store" "$SERVICE_USER"
  fi
}

# The unit as installed: ExecStart follows --prefix.
unit_text() {
  sed "s#$DEFAULT_BIN#$BIN_DEST#" "$UNIT_SRC"
}

install_files() {
  run install -D -m 0755 "$BINARY" "$BIN_DEST"
  run install -d -m 0700 -o "$SERVICE_USER" -g "$SERVICE_USER" "$DATA_DIR"
  if [[ $DRY_RUN == 1 ]]; then
    printf '+ write %s (from %s, ExecStart=%s)\n' "$UNIT_DEST" "$UNIT_SRC" "$BIN_DEST"
  else
    unit_text > "$UNIT_DEST.tmp" && chmod 0644 "$UNIT_DEST.tmp" && mv "$UNIT_DEST.tmp" "$UNIT_DEST"
  fi
  # A configured env file is the operator's: never overwritten.
  if [[ -e $ENV_DEST ]]; then
    echo "keeping existing $ENV_DEST (the shipped one is $ENV_SRC)"
  else
    run install -D -m 0640 -o root -g "$SERVICE_USER" "$ENV_SRC" "$ENV_DEST"
  fi
}

reload_systemd() {
  if [[ -d /run/systemd/system ]]; then
    run systemctl daemon-reload
  else
    echo "systemd is not running on this host: skipping systemctl daemon-reload"
  fi
}

main() {
  parse_args "$@"
  if [[ $SELF_CHECK == 1 ]]; then
    exec "$HERE/selfcheck.sh" "$0"
  fi
  if [[ $DRY_RUN == 0 && $(id -u) != 0 ]]; then
    echo "install.sh: must run as root (or with --dry-run to see what it would do)" >&2
    exit 1
  fi
  check_platform
  pick_binary
  create_user
  install_files
  reload_systemd
  echo "next: edit $ENV_DEST, then: systemctl enable --now ketch && systemctl status ketch"
  echo "check the host: $REPO/scripts/check-host --data-dir $DATA_DIR (as user $SERVICE_USER)"
}

main "$@"
