"""`rectify serve`: the live service (engine/serve/; docs/serve.md).

Exit codes as in engine/cli/common.py: 0 stopped by SIGTERM/SIGINT after a graceful shutdown,
1 the writer failed (the store keeps everything acknowledged; start again), 2 usage (a store
of another run or configuration, an address that cannot be bound, a missing token), 3
configuration.
"""

from __future__ import annotations

from typing import Any

import click

from engine.cli.common import EXIT_INVALID, EXIT_USAGE, build_engine, clock_settings, engine_options, host_port, \
    load_parameters, load_registry
from engine.cli.logs import get_logger
from engine.ingest.hj212.listener import ListenerLimits
from engine.output import StoreError
from engine.pipeline import Engine
from engine.serve import ServeConfig, Service, TokenError, is_loopback, load_token, run
from engine.state import CheckpointError


@click.command()
@click.option("--store", "store", required=True, type=click.Path(dir_okay=False),
              help="The SQLite store: accepted events, records, checkpoints. Started again on it, the service resumes.")
@click.option("--http", "http", default="127.0.0.1:8080", show_default=True, metavar="HOST:PORT",
              help="Where the HTTP API listens (port 0: any free port). Beyond loopback, POST needs a token.")
@click.option("--hj212", "hj212", metavar="HOST:PORT", help="Also accept HJ 212 data loggers over TCP (needs --registry).")
@click.option("--registry", type=click.Path(exists=True, dir_okay=False),
              help="HJ 212 registry (MN -> enterprise, outlet, process), YAML or CSV; for --hj212.")
@click.option("--out", "out", type=click.Path(dir_okay=False, allow_dash=True),
              help="Also write the chained records as JSON lines ('-' = stdout); rewritten from the store at start.")
@click.option("--token-file", type=click.Path(dir_okay=False),
              help="File holding the bearer token POST needs (default: the RECTIFY_SERVE_TOKEN variable).")
@click.option("--max-body", default=16 * 1024 * 1024, show_default=True, type=click.IntRange(1024),
              help="Largest request body in bytes (413 above).")
@click.option("--checkpoint-every", default=1_000_000, show_default=True, type=click.IntRange(1),
              help="Events between engine snapshots; a restart after a kill replays at most about this many.")
@click.option("--fsync", is_flag=True, help="Commit with SQLite synchronous=FULL: acknowledged events survive a power cut too.")
@click.option("--max-connections", default=256, show_default=True, type=click.IntRange(1, 100_000),
              help="HJ 212 connections held at once.")
@click.option("--max-unauthenticated", default=64, show_default=True, type=click.IntRange(1, 100_000),
              help="HJ 212 connections that have not yet sent a packet with a registered MN and PW; beyond it the "
                   "oldest is closed.")
@click.option("--idle-timeout", default=300.0, show_default=True, type=click.FloatRange(0.01, 86_400),
              help="Seconds before an idle HJ 212 connection is closed.")
@click.option("--auth-timeout", default=10.0, show_default=True, type=click.FloatRange(0.01, 86_400),
              help="Seconds a new HJ 212 connection has to send a packet with a registered MN and PW.")
@engine_options
def serve(store: str, http: str, hj212: str | None, registry: str | None, out: str | None, token_file: str | None,
          max_body: int, checkpoint_every: int, fsync: bool, max_connections: int,
          max_unauthenticated: int, idle_timeout: float, auth_timeout: float, disable: tuple[str, ...], options: tuple[str, ...], params: str | None, strict: bool, backend: str) -> None:
    """Serve decisions live: events in over HTTP (CloudEvents) and HJ 212, each event's records
    in the --store before the sender hears back; query records and enterprises over HTTP."""
    http_address = host_port(http, "--http")
    hj212_address = host_port(hj212, "--hj212") if hj212 else None
    if hj212_address is not None and registry is None:
        raise click.UsageError("--hj212 needs --registry")
    try:
        token = load_token(http_address[0], token_file)
    except TokenError as exc:
        raise click.UsageError(str(exc)) from None
    log = get_logger()
    stations = load_registry(registry) if hj212_address is not None and registry is not None else None
    if hj212_address is not None and not is_loopback(hj212_address[0]):
        log.warning("hj212_listen_not_loopback", host=hj212_address[0])
    first = [build_engine(disable, options, params, strict, backend)]
    plugins, parameters, clock = first[0].plugins, load_parameters(params), clock_settings()

    def make_engine() -> Engine:
        """The service's engine first, then fresh ones of the same configuration (explanations)."""
        return first.pop() if first else Engine(plugins=plugins, options=options, parameters=parameters, strict=strict,
                                                backend=backend, **clock)

    service = Service(store, make_engine, out=out, checkpoint_every=checkpoint_every, max_pending=200_000, fsync=fsync)
    try:
        service.start()
    except (StoreError, CheckpointError) as exc:
        click.echo(f"rectify: {exc}", err=True)
        raise SystemExit(EXIT_USAGE) from None
    config = ServeConfig(http=http_address, hj212=hj212_address, registry=stations, token=token, max_body=max_body,
                         hj212_limits=ListenerLimits(max_connections=max_connections, max_unauthenticated=max_unauthenticated,
                                                     idle_timeout=idle_timeout, auth_timeout=auth_timeout))
    info: dict[str, Any] = {}

    def ready(bound: dict[str, Any]) -> None:
        info.update(bound)
        where = f"http={bound['http']}" + (f" hj212={bound['hj212']}" if "hj212" in bound else "")
        recovered = bound["recovered"]
        click.echo(f"rectify serve: listening {where}; store {store}: {recovered['events']} events, "
                   f"{recovered['records']} records (replayed {recovered['replayed']} after checkpoint "
                   f"{recovered['checkpoint']} in {recovered['seconds']} s)", err=True)
        if "checkpoint_lost" in recovered:
            click.echo(f"rectify serve: {recovered['checkpoint_lost']}: every kept event was replayed instead", err=True)
        log.info("serve_ready", **bound)

    try:
        code = run(service, config, ready)
    except OSError as exc:
        service.stop()
        click.echo(f"rectify: cannot listen: {exc.strerror or exc}", err=True)
        raise SystemExit(EXIT_USAGE) from None
    status = service.status()
    if service.failure is not None:
        click.echo(f"rectify: the writer failed: {service.failure!r}; the store keeps everything acknowledged", err=True)
    log.info("serve_stopped", exit_code=code, counts=status.get("counts"), store=status.get("store"))
    click.echo(f"rectify serve: stopped; {status['store']['events']} events, {status['store']['records']} records, "
               f"chain head {status['store']['head']}", err=True)
    if code:
        raise SystemExit(EXIT_INVALID)
