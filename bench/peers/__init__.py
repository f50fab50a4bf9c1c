"""Stream-engine peers for ``python -m bench streams``: Bytewax and Quix Streams on the same job.

The job (:mod:`bench.peers.events`): N JSON payloads ``{"user_id", "amount", "ts"}``, decoded
and aggregated per ``user_id`` over hopping event-time windows (default 10 minutes every minute)
into count, sum and mean; every window reported once, final. Each peer returns a
:class:`~bench.peers.events.PeerResult` whose ``results`` must equal
:func:`~bench.peers.events.reference` (:func:`~bench.peers.events.compare` checks).

- :func:`bench.peers.bytewax_peer.run_bytewax`: Bytewax 0.21, in memory, one worker, in this process.
- :func:`bench.peers.quix_peer.run_quix`: Quix Streams 3.28 in its own venv (``bench/.venv-quix``),
  reading from a Tansu broker on loopback.

``python -m bench.peers.check`` runs both against the reference. Set-up, what is timed, and
measured figures: ``docs/bench-peers.md``.
"""

from bench.peers.events import PeerResult, compare, make_events, reference

__all__ = ["PeerResult", "compare", "make_events", "reference"]
