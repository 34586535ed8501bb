# Runs firmware test modules under the MicroPython Unix port and reports one JSON line per test:
#   micropython run_tests.py <repo root> <module> [<module> ...]
# The CPython side (tests/test_firmware_on_micropython.py) turns each line into a pytest result.
import io
import json
import sys

root = sys.argv[1]
for p in (root + '/tests/firmware', root + '/codecs', root + '/firmware'):
    sys.path.insert(0, p)

for name in sys.argv[2:]:
    try:
        mod = __import__(name)
    except Exception as e:  # noqa: BLE001 - an import failure is reported as a failed module
        buf = io.StringIO()
        sys.print_exception(e, buf)
        print(json.dumps({'module': name, 'test': None, 'ok': False, 'error': buf.getvalue()}))
        continue
    for attr in sorted(dir(mod)):
        if not attr.startswith('test_'):
            continue
        fn = getattr(mod, attr)
        try:
            fn()
            print(json.dumps({'module': name, 'test': attr, 'ok': True}))
        except Exception as e:  # noqa: BLE001 - every failure becomes a reported result
            buf = io.StringIO()
            sys.print_exception(e, buf)
            print(json.dumps({'module': name, 'test': attr, 'ok': False, 'error': buf.getvalue()}))
