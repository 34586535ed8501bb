# What the node remembers across deep sleep, kept in RTC memory (ESP32: machine.RTC().memory(), at most
# 2048 bytes; lost on power-off). Frame: b'CN' | version | crc16 (2 bytes) | length (2 bytes) | JSON.
# A wrong magic, version, length or checksum means the memory is empty or corrupt: the node starts from a
# fresh state and says so (state_lost), it never trusts half a state.
#
# Per-wake values live here, not in flash: a flash write every wake wears the flash out (Tasmota #6930).

import json

from citynode_codec.crc import crc16

_MAGIC = b'CN'
_VERSION = 1
MAX_BYTES = 2048


def fresh():
    return {
        'wake': 0,  # wake cycles since power-on
        'boot': 'unknown',  # why the node last started from scratch (reported in status)
        'next_t': 0,  # when the next sample is due (clock.time() seconds)
        'status_t': 0,  # when the next daily status is due; 0: send one now
        'status_req': True,  # a status uplink is wanted (boot, request_status)
        'status_wait': 0,  # wakes the wanted status has waited behind other messages
        'lost_note': False,  # sleep memory was lost: say so in the next status that goes out
        'pending': [],  # samples waiting for the batch: [time, value, value, ...]
        'pend_flags': [],  # union of the pending samples' flags
        'pend_iv': 0,  # sample interval of the pending samples
        'queue': [],  # encoded messages not yet sent: [fport, hex]
        'inflight': 0,  # pending samples handed to the modem in a wake that has not finished
        'alarms': [],  # raised alarm events
        'last_fill': None,  # previous fill level, for emptying detection
        'ack': None,  # [seq, command, result] to acknowledge
        'reboot': False,  # reboot once the pending ack is out
        'sensor_errors': 0,
        'radio_errors': 0,
        'lost_samples': 0,
        'fcnt': 0,  # P2P uplink counter (reserved ahead in flash, see cycle.py)
        'radio': {},  # the radio backend's own state (join backoff, duty cycle, ...)
        'stuck': None,  # ultrasonic stuck-value tracking [last_mm, count]
    }


def pack(state):
    body = json.dumps(state).encode()
    if len(body) + 7 > MAX_BYTES:
        raise ValueError('state too large: %d bytes' % len(body))
    head = bytes([_MAGIC[0], _MAGIC[1], _VERSION])
    crc = crc16(body)
    return head + bytes([crc >> 8, crc & 0xFF, len(body) >> 8, len(body) & 0xFF]) + body


def unpack(blob):
    """(state, lost): lost is True when the memory was empty or corrupt and a fresh state is returned."""
    try:
        if not blob or len(blob) < 7 or bytes(blob[0:2]) != _MAGIC or blob[2] != _VERSION:
            return fresh(), True
        crc = (blob[3] << 8) | blob[4]
        n = (blob[5] << 8) | blob[6]
        body = bytes(blob[7:7 + n])
        if len(body) != n or crc16(body) != crc:
            return fresh(), True
        state = json.loads(body)
        if not isinstance(state, dict):
            return fresh(), True
        base = fresh()
        for key in base:
            if key in state and (base[key] is None or state[key] is None
                                 or type(state[key]) is type(base[key])):
                base[key] = state[key]
        return base, False
    except (ValueError, TypeError, IndexError):
        return fresh(), True
