#!/usr/bin/env bash
# Regenerates tests/vectors/hdlkeys.json with the real Java clients (see HdlKeyVectors.java).
# Needs: default-jdk-headless, libbcprov-java, libbcpkix-java, libgoogle-gson-java,
# libcommons-codec-java, and the jars in /work/shared/handle-client and /work/shared/idsdk/lib.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
HC=/work/shared/handle-client
CP="$HC/hdlclient.jar:$HC/cnriutil-2.0.jar:/usr/share/java/gson.jar:/usr/share/java/commons-codec.jar"
CP="$CP:/usr/share/java/bcprov.jar:/usr/share/java/bcpkix.jar:/work/shared/idsdk/lib/*"
BUILD="$(mktemp -d)"
trap 'rm -rf "$BUILD"' EXIT
javac -nowarn -encoding UTF-8 -cp "$CP" -d "$BUILD" "$HERE/HdlKeyVectors.java"
java -Dlog4j.defaultInitOverride=true -cp "$BUILD:$CP" HdlKeyVectors "$HERE" "$HERE/../hdlkeys.json.tmp" >/dev/null 2>&1
mv "$HERE/../hdlkeys.json.tmp" "$HERE/../hdlkeys.json"
echo "wrote $(cd "$HERE/.." && pwd)/hdlkeys.json"
