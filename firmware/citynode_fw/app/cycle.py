# One wake of the node: load config and sleep memory, measure, decide, send, apply downlinks, plan the next
# wake. Everything touching hardware goes through `hw`, the hardware layer (hal/esp32.py on a board,
# hal/unix.py in emulation), which provides:
#
#   hw.clock                              the clock contract (hal/__init__.py)
#   hw.reset_cause()                      'power_on', 'deep_sleep', 'watchdog', ... (the spec's reset_cause)
#   hw.rtc_load() / hw.rtc_save(blob)     sleep memory
#   hw.read_file(name) / hw.write_file(name, text)   flash files; write_file is atomic (temp file + rename)
#   hw.watchdog(ms)                       an armed watchdog with feed(), or None
#   hw.adc/pin/uart/onewire/sdi12_line(role), hw.pulse_us, hw.lora_modem()   buses by role (app/sensors.py)
#   hw.log(text)                          one line for the console (`citynode monitor` decodes them)
#
# run(hw) returns the milliseconds to sleep; the hardware layer then deep-sleeps (board) or returns to its
# runner (emulation). A wake never raises: anything unexpected is logged and the node sleeps and retries.

import json

from citynode_codec import encode
from citynode_fw import VERSION

from . import alarms, config, downlinks, radios, report, sample, sensors, state

_MAX_QUEUE = 4  # encoded alarms kept for the next wake when the radio fails
_FCNT_RESERVE = 64  # P2P counters are reserved ahead in flash: one flash write per 64 frames
_MIN_SLEEP_MS = 1000
_EARLY_S = 30  # a wake this much before its slot was not the timer's (deep-sleep timers drift by seconds)


def _load_json(hw, name):
    text = hw.read_file(name)
    if text is None:
        return {}
    try:
        obj = json.loads(text)
    except ValueError:
        return {}
    return obj if isinstance(obj, dict) else {}


class Counter:
    """P2P frame counters that survive power loss: RTC memory holds the live value, flash holds a value
    reserved ahead of it, so a cold boot continues above anything already sent (no replays)."""

    def __init__(self, hw, st):
        self.hw = hw
        self.st = st
        self.saved = _load_json(hw, 'counters.json')

    def restore(self):
        self.st['fcnt'] = max(self.st['fcnt'], self.saved.get('reserved', 0))
        dl = self.saved.get('dl')
        if dl is not None:
            self.st['radio']['p2p_dl_fcnt'] = max(self.st['radio'].get('p2p_dl_fcnt', -1), dl)

    def next(self):
        n = self.st['fcnt']
        if n >= self.saved.get('reserved', 0):
            self.saved['reserved'] = n + _FCNT_RESERVE
            self._save()
        self.st['fcnt'] = n + 1
        return n

    def keep_downlink(self):
        dl = self.st['radio'].get('p2p_dl_fcnt')
        if dl is not None and dl != self.saved.get('dl'):
            self.saved['dl'] = dl
            self._save()

    def _save(self):
        self.hw.write_file('counters.json', json.dumps(self.saved))


def _status(kind, cfg, st, cause, battery, config_error):
    flags = []
    if config_error:
        flags.append('config_error')
    if st['lost_note']:
        flags.append('state_lost')
    if battery is not None and battery <= cfg['battery_low_v']:
        flags.append('low_battery')
    if st['radio'].get('modem_error'):
        flags.append('modem_error')
    if kind == 'soil' and cfg['soil_sensor'] == 'capacitive' and not cfg['soil_dry_mv']:
        flags.append('uncalibrated')
    return encode('status', {
        'node_kind': kind, 'reset_cause': cause, 'flags': flags, 'firmware_version': VERSION,
        'wake_count': st['wake'] & 0xFFFFFF, 'sample_interval_s': cfg['sample_interval_s'],
        'batch_size': cfg['batch_size'], 'battery_v': battery,
        'sensor_errors': min(st['sensor_errors'], 255), 'radio_errors': min(st['radio_errors'], 255),
        'config_crc': config.checksum(cfg)})


def _hex(b):
    return ''.join('%02x' % x for x in b)


def _unhex(s):
    return bytes(int(s[i:i + 2], 16) for i in range(0, len(s), 2))


def run(hw):
    """One wake cycle. Returns how long to sleep, in milliseconds."""
    clock = hw.clock
    now = clock.time()
    cfg, cfg_errors = config.parse(hw.read_file('config.json'))
    for e in cfg_errors:
        hw.log('config ' + e)
    wdt = hw.watchdog(cfg['wdt_ms'])
    blob = hw.rtc_load()
    st, lost = state.unpack(blob)
    counter = Counter(hw, st)
    cause = hw.reset_cause()
    if lost:
        counter.restore()
        # Empty sleep memory after a power-on is normal; empty or corrupt after a deep sleep is news.
        lost = bool(blob) or cause == 'deep_sleep'
        if lost:
            st['lost_note'] = True  # reported by the next status, even if the duty cycle delays it
            hw.log('state lost: fresh start')
    if st['inflight']:
        # The last wake ended (watchdog, power) while a batch was on its way to the modem. It was most likely
        # transmitted: sending it again would give the platform the same samples under a new frame counter,
        # which no deduplication can recognise. Count it and move on (LoRaWAN unconfirmed is at most once).
        report.sent(st, st['inflight'])
        st['inflight'] = 0
        st['radio_errors'] += 1
        hw.log('a batch was in flight when the last wake ended: not sent again')
    if lost or cause != 'deep_sleep':
        st['status_req'] = True
    if cause != 'deep_sleep':
        st['boot'] = cause
    st['wake'] += 1
    interval = cfg['sample_interval_s']
    try:
        sleep_ms = _wake(hw, cfg, cfg_errors, st, counter, wdt, now)
    except Exception as e:  # noqa: BLE001 - the node must sleep and try again, never hang or crash-loop
        hw.log('wake failed: %s %s' % (type(e).__name__, e))
        sleep_ms = interval * 1000
    if st['next_t'] <= now:
        st['next_t'] = now + interval
    try:
        hw.rtc_save(state.pack(st))
    except ValueError as e:  # too large: keep the counters, drop what cannot fit
        hw.log('state: %s' % e)
        st['pending'] = st['pending'][-4:]
        st['queue'] = []
        hw.rtc_save(state.pack(st))
    if wdt is not None:
        wdt.feed()
    return sleep_ms


def _wake(hw, cfg, cfg_errors, st, counter, wdt, now):
    clock = hw.clock
    kind = cfg['kind']
    interval = cfg['sample_interval_s']

    # 1. Measure.
    drivers = sensors.make(kind, cfg, hw)
    readings = sensors.measure(kind, drivers)
    for role in readings:
        r = readings[role]
        if r and r.get('error'):
            st['sensor_errors'] += 1
            hw.log('sensor %s %s' % (role, r['error']))
    smp = sample.build(kind, readings, cfg, config_error=bool(cfg_errors))
    raw = (readings.get(kind) or {}).get('raw_mv')
    hw.log('sample %s%s' % (json.dumps(smp), '' if raw is None else ' raw_mv=%s' % raw))
    if wdt is not None:
        wdt.feed()

    # 2. Decide.
    events, st['alarms'] = alarms.evaluate(kind, smp, cfg, st['alarms'], st['last_fill'])
    if kind == 'fill' and smp.get('fill_pct') is not None:
        st['last_fill'] = smp['fill_pct']
    report.add(st, kind, smp, now, interval)
    battery = smp.get('battery_v')

    # Messages by priority (the duty cycle often lets only the first out; the rest wait for a later wake):
    # alarms, the acknowledgement of a downlink, the data, then the health status.
    outgoing = []
    for item in st['queue']:
        outgoing.append(('queued', item[0], _unhex(item[1]), item))
    for event, cleared in events:
        fport, payload = encode('alarm', dict(smp, node_kind=kind, event=event, cleared=cleared))
        outgoing.append(('alarm', fport, payload, None))
    if st['ack'] is not None:
        seq, command, result = st['ack']
        outgoing.append(('ack',) + encode('downlink_ack', {
            'seq': seq, 'command': command, 'result': result, 'config_crc': config.checksum(cfg)}) + (None,))
    data = []
    if report.due(st, cfg):
        for fport, payload, count in report.pending_messages(st, kind, now, battery, smp):
            data.append(('batch', fport, payload, count))
    if st['status_req'] or now >= st['status_t']:
        status = ('status',) + _status(kind, cfg, st, st['boot'], battery, bool(cfg_errors)) + (None,)
        # A status that already waited a wake goes before the data, so it cannot starve behind readings.
        if st['status_wait']:
            data.insert(0, status)
        else:
            data.append(status)
        st['status_wait'] += 1
    outgoing += data

    # 3. Send.
    downs = []
    if outgoing:
        downs = _send(hw, cfg, st, counter, wdt, outgoing, now)

    # 4. Apply downlinks.
    action = None
    for fport, payload in downs:
        new_cfg, ack, act = downlinks.apply(cfg, fport, payload)
        if new_cfg is not None:
            try:
                hw.write_file('config.json', config.dumps(new_cfg))
                cfg = new_cfg
            except OSError as e:
                hw.log('config write failed: %s' % e)
                ack = (ack[0], ack[1], 'storage_error')
        st['ack'] = list(ack)
        hw.log('downlink %d:%s -> %s %s' % (fport, _hex(payload), ack[1], ack[2]))
        action = act or action
    if action == 'status':
        st['status_req'] = True
    elif action == 'reboot':
        st['reboot'] = True

    # 5. Plan the next wake on a fixed grid, so wake times do not drift with the time spent awake. A wake well
    # before its slot (a reset, a reboot) keeps that slot instead of skipping it.
    interval = cfg['sample_interval_s']
    if st['next_t'] and now < st['next_t'] - _EARLY_S:
        nxt = st['next_t']
    else:
        nxt = st['next_t'] + interval if st['next_t'] else now + interval
        if nxt <= now:
            nxt = now + interval - (now - st['next_t']) % interval if st['next_t'] else now + interval
    st['next_t'] = nxt
    if st['reboot'] and st['ack'] is None:
        hw.log('rebooting as asked')
        st['reboot'] = False
        hw.rtc_save(state.pack(st))
        hw.reboot()
    return max(_MIN_SLEEP_MS, (nxt - clock.time()) * 1000)


def _send(hw, cfg, st, counter, wdt, outgoing, now):
    """Send in order until one fails; what is left waits for the next wake. Returns the downlinks."""
    secrets = _load_json(hw, 'secrets.json')
    radio = radios.make(cfg, secrets, hw, st['radio'], counter.next)
    downs = []
    if radio is None:
        hw.log('radio: no bus for %s' % cfg['radio'])
        st['radio_errors'] += 1
        return downs
    joined = radio.join()
    if wdt is not None:
        wdt.feed()
    failed = not joined
    if failed:
        st['radio_errors'] += 1
        hw.log('radio: not joined (%s)' % getattr(radio, 'last_error', '?'))
    keep = []
    for tag, fport, payload, extra in outgoing:
        if failed:
            if tag in ('alarm', 'queued'):
                keep.append(extra if tag == 'queued' else [fport, _hex(payload)])
            continue
        if tag == 'batch':
            st['inflight'] = extra  # in sleep memory before the modem gets it (see run())
            hw.rtc_save(state.pack(st))
        res = radio.send(fport, payload, cfg['confirmed'])
        st['inflight'] = 0
        if wdt is not None:
            wdt.feed()
        hw.log('tx %d:%s %s' % (fport, _hex(payload), 'ok' if res['ok'] else res['error']))
        if not res['ok']:
            failed = True
            if res['error'] != 'duty_cycle':  # the 1 % rule is policy, not a fault
                st['radio_errors'] += 1
            if tag in ('alarm', 'queued'):
                keep.append(extra if tag == 'queued' else [fport, _hex(payload)])
            continue
        for d in res['downlinks']:
            downs.append(d)
        if tag == 'ack':
            st['ack'] = None
        elif tag == 'status':
            st['status_req'] = False
            st['status_wait'] = 0
            st['lost_note'] = False
            st['status_t'] = now + cfg['status_interval_s']
            st['sensor_errors'] = st['radio_errors'] = 0
        elif tag == 'batch':
            report.sent(st, extra)
    st['queue'] = keep[-_MAX_QUEUE:]
    counter.keep_downlink()
    radio.sleep()
    return downs
