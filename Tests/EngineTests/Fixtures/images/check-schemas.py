# Compares cryo's image schemas (a protoc descriptor set, argv[1]) with CRIU's, as pycriu
# carries them: every field cryo declares below 1000 must have CRIU's number, name, type,
# label and default, and cryo must declare every field CRIU requires. Prints each mismatch;
# exits 1 if there is any.
import re, sys, importlib, pkgutil
sys.path.insert(0, '/usr/lib/python3/dist-packages')
from google.protobuf import descriptor_pb2
import pycriu.images as pi

theirs = {}
for m in pkgutil.iter_modules(pi.__path__):
    if not m.name.endswith('_pb2'):
        continue
    mod = importlib.import_module('pycriu.images.' + m.name)
    for name, md in mod.DESCRIPTOR.message_types_by_name.items():
        theirs[name] = md

def criu_name(ours):
    snake = re.sub(r'(?<!^)(?=[A-Z])', '_', ours).lower()
    if snake in theirs:
        return snake
    for k in theirs:
        if k.replace('_', '') == ours.lower():
            return k
    return None

# Fields of newer CRIU (its images/*.proto upstream) that the pycriu installed here predates:
# (message, number) -> (name, type, label), checked the same way.
newer = {('TaskCoreEntry', 22): ('membarrier_registration_mask', 13, 1), ('InetSkEntry', 20): ('tcp_opts', 11, 1),
         ('IpOptsEntry', 5): ('pktinfo', 8, 1), ('IpOptsEntry', 6): ('tos', 13, 1), ('IpOptsEntry', 7): ('ttl', 13, 1),
         ('MemfdInodeEntry', 9): ('mode', 13, 1), ('CredsEntry', 18): ('no_new_privs', 13, 1),
         ('CredsEntry', 19): ('cap_amb', 13, 3), ('NetnsEntry', 10): ('ipv4_sysctl', 11, 3),
         ('TaskCoreEntry', 21): ('stop_signo', 13, 1), ('FileEntry', 22): ('pidfd', 11, 1)}
# Messages of newer CRIU: (field number -> (name, type, label)).
newer_messages = {'TcpOptsEntry': {1: ('cork', 8, 1), 2: ('nodelay', 8, 1), 3: ('keepcnt', 13, 1), 4: ('keepidle', 13, 1), 5: ('keepintvl', 13, 1)},
                  'PidfdEntry': {1: ('id', 13, 2), 2: ('ino', 13, 2), 3: ('flags', 13, 2), 4: ('nspid', 5, 2), 5: ('fown', 11, 2)}}

fds = descriptor_pb2.FileDescriptorSet()
fds.ParseFromString(open(sys.argv[1], 'rb').read())
problems = []
for f in fds.file:
    for m in f.message_type:
        cn = criu_name(m.name)
        if cn is None and m.name in newer_messages:
            got = {fl.number: (fl.name, fl.type, fl.label) for fl in m.field}
            if got != newer_messages[m.name]:
                problems.append('%s: ours %r, newer CRIU %r' % (m.name, got, newer_messages[m.name]))
            continue
        if cn is None:
            problems.append('%s: no such message in CRIU' % m.name)
            continue
        t = {x.number: x for x in theirs[cn].fields}
        ours = set()
        for fl in m.field:
            ours.add(fl.number)
            if fl.number >= 1000:
                continue
            x = t.get(fl.number)
            if x is None and (m.name, fl.number) in newer:
                if newer[(m.name, fl.number)] != (fl.name, fl.type, fl.label):
                    problems.append('%s.%s = %d: ours (%s,%d,%d), newer CRIU %r' % (m.name, fl.name, fl.number, fl.name, fl.type, fl.label, newer[(m.name, fl.number)]))
                continue
            if x is None:
                problems.append('%s.%s = %d: CRIU has no such field' % (m.name, fl.name, fl.number))
                continue
            if (x.name, x.type, x.label) != (fl.name, fl.type, fl.label):
                problems.append('%s.%s = %d: ours (%s,%d,%d), CRIU (%s,%d,%d)' % (m.name, fl.name, fl.number, fl.name, fl.type, fl.label, x.name, x.type, x.label))
            if x.has_default_value and x.type not in (11, 14) and fl.HasField('default_value') is False and x.default_value not in (0, False, ''):
                problems.append('%s.%s: CRIU has default %r, ours none' % (m.name, fl.name, x.default_value))
        for num, x in t.items():
            if x.label == 2 and num not in ours:
                problems.append('%s: CRIU requires %s = %d, ours lacks it' % (m.name, x.name, num))
for p in problems:
    print(p)
print('%d messages checked, %d problems' % (sum(len(f.message_type) for f in fds.file), len(problems)))
sys.exit(1 if problems else 0)
