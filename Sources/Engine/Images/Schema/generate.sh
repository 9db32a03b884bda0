#!/usr/bin/env bash
# Regenerates the committed Swift for the image schemas in proto/.
# Needs protoc (Debian: protobuf-compiler) and swift-protobuf's protoc-gen-swift. If the plugin
# is not on PATH it is built once from the local swift-protobuf checkout (about 10 minutes).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
plugin="$(command -v protoc-gen-swift || true)"
if [ -z "$plugin" ]; then
    plugin=/tmp/swift-protobuf/.build/release/protoc-gen-swift
    if [ ! -x "$plugin" ]; then
        rm -rf /tmp/swift-protobuf
        git clone -q /opt/swift-packages/apple/swift-protobuf.git /tmp/swift-protobuf
        git -C /tmp/swift-protobuf checkout -q 1.39.0
        (cd /tmp/swift-protobuf && swift build -c release --product protoc-gen-swift)
    fi
fi
cd "$here/proto"
protoc --plugin=protoc-gen-swift="$plugin" --swift_opt=Visibility=Public --swift_out="$here" *.proto
echo "generated: $(ls "$here"/*.pb.swift | xargs -n1 basename | tr '\n' ' ')"
