# Which drivers a node runs, from its config and the buses its hardware layer offers. The hardware layer
# names buses by role (board pin maps in hal/boards/*.json): 'soil' and 'battery' ADCs, a 'sensor_power'
# pin, a 'sensor' UART, 'trigger'/'echo' pins, a 'onewire' bus, an 'sdi12' line. A role the board lacks
# yields no driver, and the reading then reports the sensor as absent instead of failing the wake.


def make(kind, cfg, hw):
    """{role: driver}; roles: the main sensor (kind), 'temperature' or 'soil_temperature', 'battery'.

    Drivers that only wait (a probe settling, a DS18B20 converting) get the hardware layer's idle clock when
    it has one, which light-sleeps on an ESP32; drivers that listen on a UART or an echo pin keep the normal
    clock.
    """
    clock = hw.clock
    idle = getattr(hw, 'idle_clock', None) or clock
    out = {}
    adc = hw.adc('battery')
    if adc is not None:
        from citynode_fw.drivers.battery import Battery

        out['battery'] = Battery(adc, ratio=cfg['battery_divider'], clock=idle)
    if kind == 'fill':
        out['fill'] = _fill_sensor(cfg, hw, clock)
        if cfg['temperature_sensor'] == 'ds18b20':
            out['temperature'] = _ds18b20(hw, idle, 'temperature_c')
    else:
        out['soil'] = _soil_sensor(cfg, hw, clock, idle)
        if cfg['soil_temperature_sensor'] == 'ds18b20':
            out['soil_temperature'] = _ds18b20(hw, idle, 'soil_temperature_c')
    return out


def _fill_sensor(cfg, hw, clock):
    model = cfg['fill_sensor']
    if model == 'jsn_sr04t_pulse':
        trigger, echo = hw.pin('trigger'), hw.pin('echo')
        if trigger is None or echo is None:
            return None
        from citynode_fw.drivers.ultrasonic_pulse import UltrasonicPulse

        return UltrasonicPulse(trigger, echo, hw.pulse_us, clock)
    uart = hw.uart('sensor', 9600)
    if uart is None:
        return None
    from citynode_fw.drivers.ultrasonic_uart import UltrasonicUART

    return UltrasonicUART(uart, clock, model='a02yyuw' if model == 'a02yyuw' else 'jsn_sr04t_mode2')


def _soil_sensor(cfg, hw, clock, idle):
    if cfg['soil_sensor'] == 'sdi12':
        line = hw.sdi12_line('sdi12')
        if line is None:
            return None
        from citynode_fw.drivers import sdi12

        fields = {'smt100': sdi12.SMT100, 'teros12': sdi12.TEROS12, 'cs650': sdi12.CS650}[cfg['sdi12_model']]
        return sdi12.SDI12(line, clock, address=cfg['sdi12_address'], fields=fields,
                           power_pin=hw.pin('sensor_power'))
    adc = hw.adc('soil')
    if adc is None:
        return None
    from citynode_fw.drivers.soil_capacitive import SoilCapacitive

    dry, wet = cfg['soil_dry_mv'], cfg['soil_wet_mv']
    return SoilCapacitive(adc, idle, power_pin=hw.pin('sensor_power'), dry_mv=dry or None, wet_mv=wet or None,
                          wet_vwc_pct=cfg['soil_wet_vwc_pct'])


def _ds18b20(hw, clock, field):
    ds = hw.onewire('onewire')
    if ds is None:
        return None
    from citynode_fw.drivers.ds18b20 import DS18B20

    return DS18B20(ds, clock, field=field)


def measure(kind, drivers):
    """Run the drivers in order (the container temperature first: the pulse sensor compensates with it)."""
    readings = {}
    for role in ('battery', 'temperature', 'soil_temperature', kind):
        if role not in drivers:
            continue
        drv = drivers[role]
        if drv is None:
            readings[role] = {'flags': ['sensor_fault'], 'error': 'absent'}
        elif role == 'fill':
            t = (readings.get('temperature') or {}).get('temperature_c')
            readings[role] = drv.measure(temperature_c=t)
        else:
            readings[role] = drv.measure()
    return readings
