#!/usr/bin/env bash
# Download the Kafka broker jars (pom.xml + transitive runtime deps) into libs/.
# Idempotent: skips Maven when libs/ was completed for the current pom.xml.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
libs="$here/libs"
stamp="$libs/.pom.sha256"
want="$(sha256sum "$here/pom.xml" | cut -d' ' -f1)"

is_complete() { [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; }

if is_complete; then
  exit 0
fi

# A dev broker and a test run may call this at the same moment: serialise them.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$here/.fetch.lock"
  flock 9
  if is_complete; then exit 0; fi
fi

# Copy into a staging dir and swap it in only on success, so an interrupted
# download never leaves a libs/ that looks usable.
staging="$here/libs.partial"
rm -rf "$staging"
echo "fetch.sh: downloading Kafka jars into $libs ..." >&2
# Debian's Maven 3.8.7 prints stray ANSI resets even with -B; strip them, and keep stdout
# free for callers such as up.sh (pipefail still reports a Maven failure).
mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$staging" 2>&1 | sed 's/\x1b\[[0-9;]*m//g' >&2
echo "$want" >"$staging/.pom.sha256"
rm -rf "$libs"
mv "$staging" "$libs"
echo "fetch.sh: $(find "$libs" -name '*.jar' | wc -l) jars, $(du -sh "$libs" | cut -f1)" >&2
