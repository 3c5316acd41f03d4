"""`rectify ingest hj212`: HJ 212 packets (a file, stdin, or data loggers over TCP) to CloudEvents lines."""

from __future__ import annotations

from typing import Any

import click

from engine.cli.common import chunks, host_port, load_registry, output_files
from engine.cli.logs import get_logger
from engine.ingest import opened
from engine.ingest.hj212 import ingest
from engine.ingest.hj212.listener import ListenerLimits, serve
from engine.output import JsonlSink
from engine.records import Quarantined


@click.group("ingest")
def ingest_group() -> None:
    """Turn external monitoring data into CloudEvents JSON lines."""


@ingest_group.command("hj212")
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--registry", required=True, type=click.Path(exists=True, dir_okay=False),
              help="MN -> enterprise, PW, medium, outlet, process / point + destination (YAML or CSV).")
@click.option("--out", default="-", show_default=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="Events as CloudEvents JSON lines ('-' = stdout).")
@click.option("--quarantine", type=click.Path(dir_okay=False), help="Rejected packets as JSON lines (default: in --out).")
@click.option("--listen", metavar="HOST:PORT", help="Accept data loggers over TCP instead of reading FILE (use 127.0.0.1).")
@click.option("--max-connections", default=256, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--idle-timeout", default=300.0, show_default=True, type=click.FloatRange(0.01, 86_400), help="Seconds.")
def ingest_hj212(file: str | None, registry: str, out: str, quarantine: str | None, listen: str | None,
                 max_connections: int, idle_timeout: float) -> None:
    """HJ 212 packets (FILE, '-' for stdin, or --listen) to emission/discharge events."""
    if (file is None) == (listen is None):
        raise click.UsageError("give FILE or --listen HOST:PORT (one of them)")
    address = host_port(listen, "--listen") if listen else None
    stations = load_registry(registry)
    counts = {"events": 0, "quarantined": 0}
    with output_files(out, quarantine) as (out_stream, q_stream):
        out_sink = JsonlSink(out_stream)
        q_sink = JsonlSink(q_stream) if q_stream else out_sink

        def sink(record: Any) -> None:
            if isinstance(record, Quarantined):
                counts["quarantined"] += 1
                q_sink.write(record.to_dict())
            else:
                counts["events"] += 1
                out_sink.write(record)
            if address is not None:  # an acknowledged packet is in the file, not in a buffer
                out_sink.close()
                q_sink.close()

        if address is None:
            with opened(str(file)) as handle:
                for record in ingest(chunks(handle), stations, source=str(file)):
                    sink(record)
        else:
            if address[0] not in ("127.0.0.1", "::1", "localhost"):
                get_logger().warning("hj212_listen_not_loopback", host=address[0])
            stats = serve(stations, sink, address[0], address[1],
                          ListenerLimits(max_connections=max_connections, idle_timeout=idle_timeout),
                          ready=lambda host, port: click.echo(f"listening on {host}:{port}", err=True))
            get_logger().info("hj212_listener_stopped", **{k: getattr(stats, k) for k in stats.__slots__})
        out_sink.close()
        q_sink.close()
    click.echo(f"events {counts['events']}  quarantined packets {counts['quarantined']}", err=True)
