#!/usr/bin/env bash
# Unpack Debian's Sendmail 8.17 (sendmail-bin, sendmail-base, sendmail-cf) into a fixed directory
# for tests/lab/sendmail_lab.py, without installing it: Debian's sendmail packages conflict with
# postfix (both provide mail-transport-agent), which other tests need.
#
#   .ci/unpack-sendmail.sh [ROOT]      # ROOT: $MTALENS_SENDMAIL_ROOT, else /opt/mtalens-ci/sendmail
#
# Result: ROOT/root/usr/libexec/sendmail/sendmail (the sm-mta binary), ROOT/root/usr/share/
# sendmail/cf (the m4 files the lab builds its sendmail.cf from), ROOT/root/usr/bin/m4 (GNU m4,
# sendmail-cf's one dependency, not installed everywhere), and any library of
# sendmail-bin's Depends that is not installed on the machine, unpacked under ROOT/root too (the
# lab lists their directories in a private ld.so.cache). Idempotent: a second run with the same
# candidate version does nothing. Needs root only for writing ROOT.
set -euo pipefail

root="${1:-${MTALENS_SENDMAIL_ROOT:-/opt/mtalens-ci/sendmail}}"
binary="$root/root/usr/libexec/sendmail/sendmail"
stamp="$root/unpacked-version"

version="$(apt-cache policy sendmail-bin | awk '/Candidate:/ {print $2}')"
if [ -z "$version" ] || [ "$version" = "(none)" ]; then
  apt-get update -qq
  version="$(apt-cache policy sendmail-bin | awk '/Candidate:/ {print $2}')"
fi
if [ -x "$binary" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version" ]; then
  exit 0
fi

mkdir -p "$root"
rm -rf "$root/debs" "$root/root"
mkdir -p "$root/debs" "$root/root"
cd "$root/debs"

download() {
  # apt-get download warns (harmlessly) that _apt cannot write here: we run it as root.
  apt-get download -qq "$@" 2>/dev/null || { apt-get update -qq && apt-get download -qq "$@"; }
}

download sendmail-bin sendmail-base sendmail-cf m4
# Libraries sendmail-bin links against that this machine lacks (e.g. libwrap0): unpack them too.
# Depends looks like "libc6 (>= 2.34), libdb5.3, ...": keep the lib* names.
deb="$(ls sendmail-bin_*.deb)"
libs=()
for pkg in $(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed -e 's/(.*)//' -e 's/|.*//' -e 's/ //g'); do
  case "$pkg" in
    lib*) dpkg -s "$pkg" >/dev/null 2>&1 || libs+=("$pkg") ;;
  esac
done
if [ "${#libs[@]}" -gt 0 ]; then
  download "${libs[@]}"
fi
for f in *.deb; do dpkg -x "$f" "$root/root"; done

# Every library the binary needs must now be found, on the machine or in the unpacked tree.
libdirs="$(find "$root/root" -name '*.so*' -printf '%h\n' | sort -u | paste -sd:)"
missing="$(LD_LIBRARY_PATH="$libdirs" ldd "$binary" | grep 'not found' || true)"
if [ -n "$missing" ]; then
  echo "unpack-sendmail: libraries still missing for $binary:" >&2
  echo "$missing" >&2
  exit 1
fi
"$root/root/usr/bin/m4" --version >/dev/null
echo "$version" >"$stamp"
echo "unpack-sendmail: Sendmail $version in $root (extra libraries: ${libs[*]:-none})"
