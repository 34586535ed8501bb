"""Where the bridge sends things: the MQTT publisher, the outbox, and pure mappings to platform formats."""
