#!/usr/bin/env bash
# Install the real peers inetkit is tested and benchmarked against.
#
# Clients go in with apt-get as usual.  The servers (tftpd-hpa, atftpd, xinetd) are
# NOT installed system-wide: tftpd-hpa and atftpd conflict as Debian packages (both
# own /usr/sbin/in.tftpd) and their postinst scripts would start daemons on port 69.
# Each is unpacked with `dpkg -x` into its own folder under $INETKIT_PEERS
# (default: .peers/ in the repository) and run from there by the tests.
#
# Needs root (or sudo) for apt-get; without it, it says what is missing and the
# interop tests that need those peers are skipped.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
peers="${INETKIT_PEERS:-$here/.peers}"
clients=(curl tftp-hpa atftp netcat-openbsd socat iperf3 netbase procps)
server_libs=(libwrap0 libpcre2-8-0 libselinux1 libtirpc3)
servers=(tftpd-hpa atftpd xinetd)

if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo"; else sudo="none"; fi
if ! command -v apt-get >/dev/null || [ "$sudo" = none ]; then
  echo "install-peers: no apt-get or no root: install ${clients[*]} yourself; interop tests will skip what is missing" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${clients[@]}" "${server_libs[@]}" >/dev/null
mkdir -p "$peers/debs"
for pkg in "${servers[@]}"; do
  if [ ! -d "$peers/$pkg" ]; then
    (cd "$peers/debs" && apt-get download "$pkg" >/dev/null 2>&1) || { echo "install-peers: cannot download $pkg" >&2; continue; }
    deb=$(ls "$peers/debs/${pkg}"_*.deb | head -n 1)
    dpkg -x "$deb" "$peers/$pkg.tmp" && mv "$peers/$pkg.tmp" "$peers/$pkg"
  fi
done
echo "install-peers: clients installed; servers unpacked in $peers (${servers[*]})"
