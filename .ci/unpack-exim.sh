#!/usr/bin/env bash
# Unpack Debian's Exim 4 (exim4-daemon-light, exim4-base, exim4-config) into a fixed directory
# without installing it: installing exim4 would remove postfix (both are the machine's
# mail-transport-agent), which other tests need.
#
#   .ci/unpack-exim.sh [ROOT]      # ROOT: $MTALENS_EXIM_ROOT, else /opt/mtalens-ci/exim
#
# Result, read by tests/lab/exim_lab.py (the Exim end-to-end test) and the eximstats benchmark:
#   ROOT/root/usr/sbin/exim4       the daemon (setuid root, as packaged)
#   ROOT/root/usr/sbin/eximstats   exim4-base's log report (Perl; needs only perl-base modules)
#   ROOT/root/usr/lib/x86_64-linux-gnu/   the libraries listed below, which the machine lacks
#   ROOT/version                   the unpacked exim4-daemon-light version
# Idempotent: when that version is still apt's candidate and the binary's libraries resolve, it
# does nothing. A new candidate is unpacked beside the old one and swapped in at the end.
set -euo pipefail

root="${1:-${MTALENS_EXIM_ROOT:-/opt/mtalens-ci/exim}}"
# exim4-daemon-light's shared libraries that Debian 12's base system does not have (found with
# ldd on the unpacked binary; the check below fails if another one goes missing)
LIBRARIES=(libidn12)
PACKAGES=(exim4-daemon-light exim4-base exim4-config "${LIBRARIES[@]}")

candidate() { apt-cache policy exim4-daemon-light 2>/dev/null | awk '/Candidate:/ {print $2}'; }

# ldd prints "libfoo.so.1 => not found" for each library the loader cannot find
missing_libs() {
  LD_LIBRARY_PATH="$1/root/usr/lib/x86_64-linux-gnu" ldd "$1/root/usr/sbin/exim4" \
    | awk '/not found/ {print $1}'
}

version="$(candidate)"
if [ -z "$version" ] || [ "$version" = "(none)" ]; then
  apt-get update -qq
  version="$(candidate)"
fi
if [ -x "$root/root/usr/sbin/exim4" ] && [ -f "$root/root/usr/sbin/eximstats" ] \
   && [ "$(cat "$root/version" 2>/dev/null)" = "$version" ] && [ -z "$(missing_libs "$root")" ]; then
  exit 0
fi

work="$root.new"
rm -rf "$work"
mkdir -p "$work/debs" "$work/root"
(
  cd "$work/debs"
  # as root apt warns that its _apt user cannot write here; -o APT::Sandbox::User=root says so
  fetch() { apt-get download -qq -o APT::Sandbox::User=root "$@"; }
  fetch "${PACKAGES[@]}" || { apt-get update -qq && fetch "${PACKAGES[@]}"; }
)
for deb in "$work"/debs/*.deb; do dpkg -x "$deb" "$work/root"; done
gone="$(missing_libs "$work")"
if [ -n "$gone" ]; then
  echo "unpack-exim: exim4 still lacks: $gone (add their packages to LIBRARIES)" >&2
  exit 1
fi
dpkg-deb -f "$work"/debs/exim4-daemon-light_*.deb Version > "$work/version"
rm -rf "$root.old"
if [ -e "$root" ]; then mv "$root" "$root.old"; fi
mv "$work" "$root"
rm -rf "$root.old"
echo "unpack-exim: Exim $(cat "$root/version") in $root/root"
