#!/usr/bin/env bash
# Regenerates the committed Swift (rpc.pb.swift) for CRIU's RPC schema in proto/:
#     Sources/Engine/RPC/Schema/generate.sh
# Needs protoc (Debian: protobuf-compiler) and swift-protobuf's protoc-gen-swift of the same
# version as the SwiftProtobuf library in Package.resolved (generated code is tied to it).
# The plugin is taken from $PROTOC_GEN_SWIFT, else /tmp/swift-protobuf; if neither has the
# right version it is built from the local swift-protobuf mirror into /tmp/swift-protobuf,
# which takes about 10 minutes on two cores.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version=1.39.0
plugin="${PROTOC_GEN_SWIFT:-/tmp/swift-protobuf/.build/release/protoc-gen-swift}"
if ! "$plugin" --version 2>/dev/null | grep -qx "protoc-gen-swift $version"; then
    echo "building protoc-gen-swift $version into /tmp/swift-protobuf (about 10 minutes)" >&2
    rm -rf /tmp/swift-protobuf
    git clone -q /opt/swift-packages/apple/swift-protobuf.git /tmp/swift-protobuf
    git -C /tmp/swift-protobuf checkout -q "$version"
    (cd /tmp/swift-protobuf && swift build -c release --product protoc-gen-swift)
    plugin=/tmp/swift-protobuf/.build/release/protoc-gen-swift
fi
cd "$here/proto"
protoc --plugin=protoc-gen-swift="$plugin" --swift_opt=Visibility=Public --swift_out="$here" *.proto
echo "generated: $(ls "$here"/*.pb.swift | xargs -n1 basename | tr '\n' ' ')"
