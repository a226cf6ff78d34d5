"""The mosquitto helper really runs a broker that keeps queued messages across a restart."""

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes
import threading


def test_persistent_session_survives_broker_restart(broker):
    got, ready = [], threading.Event()
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600

    def on_message(client, userdata, msg):
        got.append(msg.payload)
        ready.set()

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sub-1", protocol=mqtt.MQTTv5)
    subscribed = threading.Event()
    sub.on_message = on_message
    sub.on_subscribe = lambda *args: subscribed.set()
    sub.connect("127.0.0.1", broker.port, clean_start=False, properties=props)
    sub.subscribe("t/#", qos=1)
    sub.loop_start()
    assert subscribed.wait(5)
    sub.disconnect()
    sub.loop_stop()

    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="pub-1", protocol=mqtt.MQTTv5)
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    pub.publish("t/x", b"kept", qos=1).wait_for_publish(5)
    pub.disconnect()
    pub.loop_stop()

    broker.restart()
    sub.connect("127.0.0.1", broker.port, clean_start=False, properties=props)
    sub.loop_start()
    assert ready.wait(10)
    sub.disconnect()
    sub.loop_stop()
    assert got == [b"kept"]
