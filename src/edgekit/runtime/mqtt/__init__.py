"""MQTT in, inference, MQTT out: the bridge behind ``edgekit mqtt`` and ``examples/iot_app.py --source mqtt``.

Design (what a fleet operator can rely on):

* **Payloads** are the ones ``edgekit serve`` takes: JSON (``{"id": ..., "inputs": {name: [[...]]}}``,
  ``{"inputs": [[...]]}`` or a bare nested list for a one-input model), ``.npy`` (``np.save``) or
  ``.npz`` (``np.savez``), told apart by the MQTT v5 Content Type when the sender sets one, else by
  their first bytes. Anything over ``max_payload`` bytes is refused before it is queued.
* **Correlation**: a result carries ``"id"`` (the JSON ``id``, else the MQTT v5 Correlation Data as
  text) and ``"topic"`` (the topic the input came on, so ``sensors/+/frame`` subscribers learn the
  device from it). Correlation Data is echoed as a v5 property, and a v5 Response Topic on the
  request wins over ``output_topic``: MQTT v5 request/response works as the spec describes.
* **Bounded queue, drop-oldest**: paho's network thread puts each message on a
  ``queue.Queue(maxsize=queue_size)``; one inference thread takes them. When the queue is full the
  *oldest* waiting message is dropped (counted in ``dropped``, logged at most every 10 s). Blocking
  the network thread instead would stall keepalive pings and PUBACKs, and the broker would cut the
  connection; and on a sensor stream the newest reading is the one worth answering. Memory is
  bounded by about ``queue_size * max_payload`` in, ``max_pending`` unacknowledged results out.
* **Delivery**: results and errors are published with ``qos`` (default 1, at least once). Paho keeps
  unacknowledged QoS 1 messages across a reconnect and re-sends them; past ``max_pending`` a result
  is dropped and counted in ``publish_failed`` rather than held without limit.
* **Reconnect**: paho's exponential back-off (``reconnect_delay_set``: doubling from ``backoff_min``
  to ``backoff_max``, reset after a good CONNACK). Each bridge draws its starting delay once from
  ``[backoff_min, 1.5 * backoff_min]`` so a fleet that lost the same broker does not come back in
  lockstep. The subscription is renewed in every ``on_connect``: a broker that restarted without
  persistence (or a clean session) has forgotten it. With ``client_id`` and ``session_expiry`` set,
  the broker keeps the session and queues QoS 1 inputs while the bridge is away.
* **The first connection** must succeed within ``connect_timeout`` seconds (same back-off), else
  :class:`BrokerError` says why: a wrong address fails loudly at start instead of retrying silently.
* **Bad payloads** (not JSON, wrong shape or dtype, too big) publish one JSON error on
  ``error_topic`` (``{"error": ..., "type": ..., "id": ..., "topic": ..., "bytes": ...}``) and the
  bridge goes on. An engine failure is reported the same way with ``"status": "error"``.
* **Shutdown** (SIGINT/SIGTERM in :meth:`Bridge.run_forever`): stop taking messages, answer what is
  queued and wait for PUBACKs (up to ``drain_seconds``), publish ``offline`` on ``status_topic``
  (also the broker-sent will), disconnect, return the counters.

Modules (imports run one way: bridge -> connection -> messages, config):

* :mod:`.config`: :class:`MqttConfig` (broker, topics, limits, checked when built), broker
  addresses (:func:`parse_broker`, :func:`parse_url`), :func:`topic_matches`
* :mod:`.messages`: :class:`Inbound` and the payload codecs (:func:`parse_payload`, :func:`to_feeds`)
* :mod:`.connection`: :class:`Connection`, the paho client (TLS, auth, back-off, TCP_NODELAY, inbox)
* :mod:`.bridge`: :class:`Bridge`, the inference thread, result and error reports, shutdown, counters

Example:
    >>> from edgekit.runtime import load
    >>> cfg = MqttConfig(host="127.0.0.1", port=1883, input_topic="frames/+", output_topic="results")
    >>> cfg.error_topic
    'results/errors'
    >>> Bridge(load("out/"), cfg).run_forever()  # until SIGINT/SIGTERM  # doctest: +SKIP
"""

from __future__ import annotations

from edgekit.errors import BrokerError
from edgekit.runtime.mqtt.bridge import ENDPOINT, Bridge
from edgekit.runtime.mqtt.config import PROTOCOLS, MqttConfig, parse_broker, parse_url, topic_matches
from edgekit.runtime.mqtt.connection import Connection
from edgekit.runtime.mqtt.messages import NPZ_EXPANSION, Inbound, PayloadTooLarge, parse_payload, payload_kind, to_feeds

__all__ = ["ENDPOINT", "NPZ_EXPANSION", "PROTOCOLS", "Bridge", "BrokerError", "Connection", "Inbound", "MqttConfig",
           "PayloadTooLarge", "parse_broker", "parse_payload", "parse_url", "payload_kind", "to_feeds", "topic_matches"]
