# Runs under the MicroPython Unix port: answers codec calls, one JSON request per line on stdin,
# one JSON result per line on stdout. Usage: micropython codec_server.py <path to codecs/>
import json
import sys

sys.path.insert(0, sys.argv[1])

from citynode_codec import decode_downlink, decode_uplink, encode_downlink, encode_uplink  # noqa: E402


def run(req):
    fn = req['fn']
    inp = req['input']
    if fn == 'decodeUplink':
        return decode_uplink(inp['fPort'], bytes(inp['bytes']))
    if fn == 'decodeDownlink':
        return decode_downlink(inp['fPort'], bytes(inp['bytes']))
    out = (encode_downlink if fn == 'encodeDownlink' else encode_uplink)(inp['data'])
    if 'bytes' in out:
        out['bytes'] = list(out['bytes'])
    return out


while True:
    line = sys.stdin.readline()
    if not line:
        break
    try:
        result = run(json.loads(line))
    except Exception as e:  # noqa: BLE001 - a crash is a test failure, reported as data rather than a dead pipe
        result = {'crash': '%s: %s' % (type(e).__name__, e)}
    sys.stdout.write(json.dumps(result) + '\n')
