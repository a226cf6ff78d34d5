"""The collector: MQTT subscriber, validation, dedupe, dead letters, terminal status, and the vote stores."""
