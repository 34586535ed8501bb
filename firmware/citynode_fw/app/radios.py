# The radio backend a node uses, built from its config, secrets and the buses of its hardware layer.



def make(cfg, secrets, hw, state, next_fcnt):
    """The backend for cfg['radio'], or None when the board lacks the bus it needs."""
    settings = {
        'band': cfg['band'],
        'adr': cfg['adr'],
        'dr': cfg['dr'],
        'join_backoff_s': cfg['join_backoff_s'],
        'join_backoff_cap_s': cfg['join_backoff_cap_s'],
        'p2p_freq_hz': cfg['p2p_freq_hz'],
        'p2p_sf': cfg['p2p_sf'],
        'p2p_bw_khz': int(cfg['p2p_bw_khz']),
        'p2p_txp_dbm': cfg['p2p_txp_dbm'],
        'p2p_rx_ms': cfg['p2p_rx_ms'],
    }
    # Identity and keys only when known: a backend leaves a missing one as the modem already has it.
    for key, value in (('dev_eui', cfg['dev_eui'] or secrets.get('dev_eui')), ('app_eui', secrets.get('join_eui')),
                       ('app_key', secrets.get('app_key')), ('p2p_key', secrets.get('p2p_key'))):
        if value:
            settings[key] = value
    kind = cfg['radio']
    if kind == 'sx126x_p2p':
        modem = hw.lora_modem()
        if modem is None:
            return None
        from citynode_fw.radio.sx126x_p2p import SX126xP2P

        return SX126xP2P(modem, hw.clock, settings, state, next_fcnt=next_fcnt)
    uart = hw.uart('modem', 115200)
    if uart is None:
        return None
    if kind == 'rak3172_p2p':
        from citynode_fw.radio.rak3172_p2p import RAK3172P2P

        return RAK3172P2P(uart, hw.clock, settings, state, next_fcnt=next_fcnt, reset_pin=hw.pin('modem_reset'))
    from citynode_fw.radio.rak3172_lorawan import RAK3172LoRaWAN

    return RAK3172LoRaWAN(uart, hw.clock, settings, state, reset_pin=hw.pin('modem_reset'))
