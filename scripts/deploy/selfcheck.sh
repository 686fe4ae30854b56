#!/usr/bin/env bash
# Self-check of install.sh and ketch.service, run by `install.sh --self-check` (and by the
# server's systemd_notify test): --dry-run prints each step and changes nothing, the script
# refuses to install as non-root and rejects bad arguments, and `systemd-analyze verify`
# accepts the unit without a warning. Prints one line per check and "N passed, N failed".
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
INSTALL="${1:-$HERE/install.sh}"
PASSED=0; FAILED=0
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

ok()   { PASSED=$((PASSED + 1)); echo "ok   $1"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL $1"; [[ -n ${2:-} ]] && printf '%s\n' "$2" | sed 's/^/     | /'; }

# expect NAME OUTPUT NEEDLE: OUTPUT contains the line NEEDLE exactly.
expect_line() {
  if grep -qxF -- "$3" <<<"$2"; then ok "$1"; else fail "$1: no line '$3'" "$2"; fi
}

# Every path an install writes, with its inode change time ('-' when absent), and the user.
install_state() {
  local p
  for p in /usr/local/bin/ketch /etc/systemd/system/ketch.service /etc/ketch /etc/ketch/ketch.env /var/lib/ketch; do
    printf '%s=%s ' "$p" "$(stat -c %Z "$p" 2>/dev/null || echo -)"
  done
  id -u ketch 2>/dev/null || echo "no-user"
}

check_dry_run_with_binary() {
  local bin="$TMP/ketch-release" out rc before after
  printf '#!/bin/sh\nexit 0\n' > "$bin"; chmod 0755 "$bin"
  before="$(install_state)"
  out="$(bash "$INSTALL" --dry-run --binary "$bin" 2>&1)"; rc=$?
  after="$(install_state)"
  [[ $rc == 0 ]] && ok "dry-run exits 0" || fail "dry-run exits 0 (got $rc)" "$out"
  expect_line "dry-run installs the given binary" "$out" "+ install -D -m 0755 $bin /usr/local/bin/ketch"
  expect_line "dry-run creates the data dir for user ketch" "$out" "+ install -d -m 0700 -o ketch -g ketch /var/lib/ketch"
  expect_line "dry-run writes the unit" "$out" \
    "+ write /etc/systemd/system/ketch.service (from $HERE/ketch.service, ExecStart=/usr/local/bin/ketch)"
  if id -u ketch >/dev/null 2>&1; then
    expect_line "dry-run keeps the existing user" "$out" "user ketch exists"
  else
    expect_line "dry-run creates the system user" "$out" \
      "+ useradd --system --user-group --home-dir /var/lib/ketch --no-create-home --shell /usr/sbin/nologin --comment ketch\\ key-value\\ store ketch"
  fi
  if [[ -e /etc/ketch/ketch.env ]]; then
    expect_line "dry-run keeps a configured env file" "$out" \
      "keeping existing /etc/ketch/ketch.env (the shipped one is $HERE/ketch.env)"
  else
    expect_line "dry-run installs the env file" "$out" "+ install -D -m 0640 -o root -g ketch $HERE/ketch.env /etc/ketch/ketch.env"
  fi
  if [[ -d /run/systemd/system ]]; then
    expect_line "dry-run reloads systemd" "$out" "+ systemctl daemon-reload"
  else
    expect_line "dry-run says systemd is not running" "$out" "systemd is not running on this host: skipping systemctl daemon-reload"
  fi
  [[ $before == "$after" ]] && ok "dry-run changed nothing on disk" || fail "dry-run changed what it installs" "$before -> $after"
}

check_dry_run_builds_and_prefix() {
  local out repo
  repo="$(cd "$HERE/../.." && pwd)"
  out="$(bash "$INSTALL" --dry-run --prefix /opt/ketch 2>&1)"
  expect_line "dry-run without --binary builds a release" "$out" \
    "+ cargo build --release -p ketch --manifest-path $repo/Cargo.toml"
  if grep -q -- "+ install -D -m 0755 .*/release/ketch /opt/ketch/bin/ketch$" <<<"$out"; then
    ok "--prefix moves the binary"
  else
    fail "--prefix moves the binary" "$out"
  fi
  expect_line "--prefix moves the unit's ExecStart" "$out" \
    "+ write /etc/systemd/system/ketch.service (from $HERE/ketch.service, ExecStart=/opt/ketch/bin/ketch)"
}

check_refusals() {
  local out rc
  out="$(bash "$INSTALL" --no-such-flag 2>&1)"; rc=$?
  [[ $rc == 2 ]] && ok "unknown argument exits 2" || fail "unknown argument exits 2 (got $rc)" "$out"
  out="$(bash "$INSTALL" --dry-run --binary "$TMP/missing" 2>&1)"; rc=$?
  [[ $rc == 1 && $out == *"is not an executable file"* ]] && ok "missing binary refused" || fail "missing binary refused" "$out"
  if [[ $(id -u) == 0 ]]; then
    if ! command -v setpriv >/dev/null; then fail "non-root refusal: setpriv (util-linux) not found"; return; fi
    out="$(setpriv --reuid=65534 --regid=65534 --clear-groups bash "$INSTALL" --binary /bin/true 2>&1)"; rc=$?
  else
    out="$(bash "$INSTALL" --binary /bin/true 2>&1)"; rc=$?
  fi
  [[ $rc == 1 && $out == *"must run as root"* ]] && ok "non-root install refused" || fail "non-root install refused (rc $rc)" "$out"
}

# systemd-analyze verify checks the unit's syntax and that ExecStart's binary exists; it exits 0
# even on "Failed to parse" warnings, so any output is a failure too.
check_unit_verifies() {
  if ! command -v systemd-analyze >/dev/null; then
    fail "systemd-analyze verify: systemd-analyze not installed (apt-get install systemd)"
    return
  fi
  mkdir -p "$TMP/unit"
  sed "s#/usr/local/bin/ketch#/bin/true#" "$HERE/ketch.service" > "$TMP/unit/ketch.service"
  local out rc
  out="$(systemd-analyze verify "$TMP/unit/ketch.service" 2>&1)"; rc=$?
  [[ $rc == 0 && -z $out ]] && ok "systemd-analyze verify: no warning" || fail "systemd-analyze verify (rc $rc)" "$out"
  sed "s#/usr/local/bin/ketch#/bin/true#; s/^Type=notify$/Type=notifyy/" "$HERE/ketch.service" > "$TMP/unit/ketch.service"
  out="$(systemd-analyze verify "$TMP/unit/ketch.service" 2>&1)"
  [[ -n $out ]] && ok "systemd-analyze verify catches a broken unit" || fail "systemd-analyze verify let Type=notifyy through"
}

check_dry_run_with_binary
check_dry_run_builds_and_prefix
check_refusals
check_unit_verifies
echo "$PASSED passed, $FAILED failed"
[[ $FAILED == 0 ]]
