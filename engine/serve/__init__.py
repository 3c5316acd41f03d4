"""The live service, `rectify serve`: events as they happen in, decisions at once out.

In: CloudEvents over HTTP (structured, batched, binary mode; binding.py) and HJ 212 packets
from data loggers over TCP (engine/ingest/hj212/listener.py). Out: each event's findings and
decisions in the SQLite store (and the chained JSONL `--out`) before the sender is
acknowledged (the HTTP response; the HJ 212 9014 reply), and the store's records and the
engine's state over HTTP (app.py). One engine written on the event loop, group commits, checkpoints
and a restart that replays the events kept after the last one (service.py); the process, its
sockets and graceful shutdown (server.py); who may post (auth.py). Design: docs/serve.md.
"""

from engine.serve.app import create_app
from engine.serve.auth import TOKEN_ENV, TokenError, authorised, is_loopback, load_token
from engine.serve.binding import BodyError, NotJson, Posted, Unsupported, events_from_http, lines_from_http
from engine.serve.server import ServeConfig, bind, run
from engine.serve.service import Busy, Outcome, Service, Stopped

__all__ = [
    "TOKEN_ENV",
    "BodyError",
    "Busy",
    "NotJson",
    "Outcome",
    "Posted",
    "ServeConfig",
    "Service",
    "Stopped",
    "TokenError",
    "Unsupported",
    "authorised",
    "bind",
    "create_app",
    "events_from_http",
    "is_loopback",
    "lines_from_http",
    "load_token",
    "run",
]
