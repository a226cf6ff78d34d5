"""The terminal: buttons and LEDs (gpiozero), lock-out, on-disk outbox, MQTT publisher, simulator.

Runs on a Raspberry Pi with only the standard library, gpiozero and paho-mqtt.
"""
