"""An embedded pure-Python MQTT 3.1.1 broker (amqtt) for ``manyi run`` when mosquitto is missing.

DEMO ONLY. ``python -m demo.embedded_broker --port P`` runs amqtt on 127.0.0.1:P in
this process until SIGTERM/SIGINT. amqtt speaks MQTT 3.1.1 only (no reason codes, no
session expiry), keeps sessions and queued messages in memory only (a restart
loses them) and has no ACL in this configuration: production uses mosquitto with
deploy/'s configuration and MQTT 5. docs/operations.md ("Embedded broker") lists what
was verified.

Two amqtt 0.12 behaviours are corrected here:

* amqtt keeps no session for a client it marks anonymous; :class:`OpenAuthPlugin`
  accepts everyone without marking them, so a client with clean_session=False gets
  its queued QoS 1 messages after a reconnect, as with mosquitto.
* On every CONNECT amqtt sends the new client the retained messages matching ANY
  session's subscriptions (a terminal would receive every terminal's status);
  :class:`DemoBroker` sends retained messages only for the client's own subscriptions.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from dataclasses import dataclass

from amqtt.broker import Broker
from amqtt.plugins.base import BaseAuthPlugin

log = logging.getLogger("demo.embedded_broker")


class OpenAuthPlugin(BaseAuthPlugin):
    """Accept every client and keep its session (amqtt drops the sessions of 'anonymous' clients)."""

    @dataclass
    class Config:
        """No options."""

    async def authenticate(self, *, session) -> bool:
        """Every client may connect."""
        return True


class DemoBroker(Broker):
    """amqtt's Broker that sends a client only the retained messages of its own subscriptions."""

    async def _publish_retained_messages_for_subscription(self, subscription, session) -> None:
        subscriptions = getattr(self, "_subscriptions", None)   # amqtt 0.12: filter -> [(session, qos)]
        own = subscriptions is None or any(
            s.client_id == session.client_id for s, _qos in subscriptions.get(subscription[0], ()))
        if own:
            await super()._publish_retained_messages_for_subscription(subscription, session)


def broker_config(host: str, port: int) -> dict:
    """amqtt's configuration: one TCP listener, open authentication, no $SYS topics."""
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {"demo.embedded_broker.OpenAuthPlugin": {}},
    }


async def serve(host: str, port: int) -> None:
    """Run the broker until SIGTERM or SIGINT, then shut it down."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    broker = DemoBroker(broker_config(host, port))
    await broker.start()
    print(f"embedded MQTT 3.1.1 broker (amqtt, demo only) listening on {host}:{port}", flush=True)
    await stop.wait()
    await broker.shutdown()


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m demo.embedded_broker --port P [--host H]``."""
    parser = argparse.ArgumentParser(prog="python -m demo.embedded_broker", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--debug", action="store_true", help="log every packet")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("transitions").setLevel(logging.WARNING)
    asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
