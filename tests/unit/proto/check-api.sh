#!/bin/bash
# Sanity checks on proto/api.proto (CRI runtime.v1): compiles it with protoc
# into a descriptor set and asserts, via Debian's python3-protobuf, the
# package, services, well-known RPCs and a set of kubelet-relevant field
# numbers and types.
#
# Usage: check-api.sh [SRCDIR]   (SRCDIR defaults to the repository root)
# Exit status: 0 when every check passes, 1 on any failure, 77 (automake
# "skip") when protoc or python3 with google.protobuf is unavailable.

set -u

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
srcdir=${1:-${srcdir:-$(cd "$script_dir/../../.." && pwd)}}
proto_dir="$srcdir/proto"
PROTOC=${PROTOC:-protoc}
PYTHON=${PYTHON:-/usr/bin/python3}
[ -x "$PYTHON" ] || PYTHON=python3

if ! command -v "$PROTOC" >/dev/null 2>&1; then
    echo "SKIP: protoc not found"
    exit 77
fi
if ! "$PYTHON" -c 'import google.protobuf.descriptor_pb2' >/dev/null 2>&1; then
    echo "SKIP: $PYTHON lacks google.protobuf (python3-protobuf)"
    exit 77
fi
if [ ! -f "$proto_dir/api.proto" ]; then
    echo "FAIL: $proto_dir/api.proto not found"
    exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/check-api.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

if ! "$PROTOC" --proto_path="$proto_dir" --descriptor_set_out="$tmp/api.pb" \
        "$proto_dir/api.proto" 2>"$tmp/protoc.err"; then
    echo "FAIL: protoc rejected api.proto:"
    cat "$tmp/protoc.err"
    exit 1
fi
if [ -s "$tmp/protoc.err" ]; then
    echo "FAIL: protoc warnings:"
    cat "$tmp/protoc.err"
    exit 1
fi

exec "$PYTHON" - "$tmp/api.pb" <<'PYEOF'
import sys
from google.protobuf import descriptor_pb2 as dp

F = dp.FieldDescriptorProto
fds = dp.FileDescriptorSet()
with open(sys.argv[1], 'rb') as fh:
    fds.ParseFromString(fh.read())
f = fds.file[0]

passed = 0
failed = 0

def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print('FAIL: ' + what)

check(f.syntax == 'proto3', 'syntax is proto3 (got %r)' % f.syntax)
check(f.package == 'runtime.v1', 'package is runtime.v1 (got %r)' % f.package)
check(list(f.dependency) == [], 'no imports (got %r)' % list(f.dependency))

services = {s.name: s for s in f.service}
messages = {m.name: m for m in f.message_type}
enums = {e.name: e for e in f.enum_type}

methods = {}
for s in ('RuntimeService', 'ImageService'):
    check(s in services, 'service %s exists' % s)
    if s in services:
        for m in services[s].method:
            methods[(s, m.name)] = m

RUNTIME = [
    'Version', 'RunPodSandbox', 'StopPodSandbox', 'RemovePodSandbox',
    'PodSandboxStatus', 'ListPodSandbox', 'CreateContainer',
    'StartContainer', 'StopContainer', 'RemoveContainer', 'ListContainers',
    'ContainerStatus', 'UpdateContainerResources', 'ReopenContainerLog',
    'ExecSync', 'Exec', 'Attach', 'PortForward', 'ContainerStats',
    'ListContainerStats', 'PodSandboxStats', 'ListPodSandboxStats',
    'UpdateRuntimeConfig', 'Status', 'CheckpointContainer',
    'GetContainerEvents', 'ListMetricDescriptors', 'ListPodSandboxMetrics',
    'RuntimeConfig',
]
IMAGE = ['ListImages', 'ImageStatus', 'PullImage', 'RemoveImage',
         'ImageFsInfo']
for name in RUNTIME:
    check(('RuntimeService', name) in methods,
          'RuntimeService.%s exists' % name)
for name in IMAGE:
    check(('ImageService', name) in methods, 'ImageService.%s exists' % name)

# Request/response types and streaming shape of a few RPCs.
SIGS = [
    ('RuntimeService', 'Version', 'VersionRequest', 'VersionResponse', False),
    ('RuntimeService', 'RunPodSandbox', 'RunPodSandboxRequest',
     'RunPodSandboxResponse', False),
    ('RuntimeService', 'GetContainerEvents', 'GetEventsRequest',
     'ContainerEventResponse', True),
    ('ImageService', 'PullImage', 'PullImageRequest', 'PullImageResponse',
     False),
]
for svc, name, req, resp, stream in SIGS:
    m = methods.get((svc, name))
    ok = (m is not None and m.input_type == '.runtime.v1.' + req
          and m.output_type == '.runtime.v1.' + resp
          and bool(m.server_streaming) == stream
          and not m.client_streaming)
    check(ok, '%s.%s(%s) returns (%s%s)' % (svc, name, req,
          'stream ' if stream else '', resp))

STR, BOOL, I32, I64, MSG, ENUM, BYTES = (F.TYPE_STRING, F.TYPE_BOOL,
    F.TYPE_INT32, F.TYPE_INT64, F.TYPE_MESSAGE, F.TYPE_ENUM, F.TYPE_BYTES)
REP = F.LABEL_REPEATED

# (message, field, number, type, type_name or None, repeated?)
FIELDS = [
    ('VersionRequest', 'version', 1, STR, None, False),
    ('VersionResponse', 'version', 1, STR, None, False),
    ('VersionResponse', 'runtime_name', 2, STR, None, False),
    ('VersionResponse', 'runtime_version', 3, STR, None, False),
    ('VersionResponse', 'runtime_api_version', 4, STR, None, False),
    ('PodSandboxConfig', 'metadata', 1, MSG, 'PodSandboxMetadata', False),
    ('PodSandboxConfig', 'log_directory', 3, STR, None, False),
    ('PodSandboxConfig', 'port_mappings', 5, MSG, 'PortMapping', True),
    ('PodSandboxConfig', 'linux', 8, MSG, 'LinuxPodSandboxConfig', False),
    ('RunPodSandboxRequest', 'config', 1, MSG, 'PodSandboxConfig', False),
    ('RunPodSandboxRequest', 'runtime_handler', 2, STR, None, False),
    ('LinuxSandboxSecurityContext', 'run_as_group', 8, MSG, 'Int64Value',
     False),
    ('ContainerConfig', 'image', 2, MSG, 'ImageSpec', False),
    ('ContainerConfig', 'envs', 6, MSG, 'KeyValue', True),
    ('ContainerConfig', 'log_path', 11, STR, None, False),
    ('ContainerConfig', 'linux', 15, MSG, 'LinuxContainerConfig', False),
    ('CreateContainerRequest', 'sandbox_config', 3, MSG, 'PodSandboxConfig',
     False),
    ('ContainerStatus', 'exit_code', 7, I32, None, False),
    ('ContainerStatus', 'image_id', 17, STR, None, False),
    ('ImageSpec', 'user_specified_image', 18, STR, None, False),
    ('StatusResponse', 'status', 1, MSG, 'RuntimeStatus', False),
    ('StopContainerRequest', 'timeout', 2, I64, None, False),
    ('ExecSyncRequest', 'cmd', 2, STR, None, True),
    ('ExecSyncRequest', 'timeout', 3, I64, None, False),
    ('ExecSyncResponse', 'stdout', 1, BYTES, None, False),
    ('ExecSyncResponse', 'exit_code', 3, I32, None, False),
    ('PullImageRequest', 'image', 1, MSG, 'ImageSpec', False),
    ('PullImageRequest', 'auth', 2, MSG, 'AuthConfig', False),
    ('PullImageRequest', 'sandbox_config', 3, MSG, 'PodSandboxConfig', False),
    ('PullImageResponse', 'image_ref', 1, STR, None, False),
    ('ImageFsInfoResponse', 'container_filesystems', 2, MSG,
     'FilesystemUsage', True),
]
for msg, name, num, typ, tname, rep in FIELDS:
    m = messages.get(msg)
    fl = None
    if m is not None:
        fl = next((x for x in m.field if x.name == name), None)
    ok = (fl is not None and fl.number == num and fl.type == typ
          and (tname is None or fl.type_name == '.runtime.v1.' + tname)
          and (fl.label == REP) == rep)
    check(ok, '%s.%s = %d (%s%s)' % (msg, name, num,
          'repeated ' if rep else '', tname or F.Type.Name(typ)))

# Map fields (map<string,string>): message, field, number.
def is_string_map(msg, name, num):
    m = messages.get(msg)
    if m is None:
        return False
    fl = next((x for x in m.field if x.name == name), None)
    if fl is None or fl.number != num or fl.label != REP or fl.type != MSG:
        return False
    entry = next((n for n in m.nested_type
                  if '.runtime.v1.%s.%s' % (msg, n.name) == fl.type_name), None)
    return (entry is not None and entry.options.map_entry
            and [x.type for x in entry.field] == [STR, STR])

for msg, name, num in [('StatusResponse', 'info', 2),
                       ('PodSandboxConfig', 'annotations', 7),
                       ('ContainerConfig', 'labels', 9)]:
    check(is_string_map(msg, name, num),
          '%s.%s = %d is map<string, string>' % (msg, name, num))

# Enum values the kubelet compares against.
ENUMS = [
    ('PodSandboxState', 'SANDBOX_READY', 0),
    ('PodSandboxState', 'SANDBOX_NOTREADY', 1),
    ('ContainerState', 'CONTAINER_RUNNING', 1),
    ('ContainerState', 'CONTAINER_EXITED', 2),
    ('NamespaceMode', 'NODE', 2),
    ('Protocol', 'SCTP', 2),
    ('CgroupDriver', 'CGROUPFS', 1),
]
for en, val, num in ENUMS:
    e = enums.get(en)
    v = None if e is None else next((x for x in e.value if x.name == val), None)
    check(v is not None and v.number == num, '%s.%s = %d' % (en, val, num))

print('check-api: %d passed, %d failed' % (passed, failed))
sys.exit(1 if failed else 0)
PYEOF
