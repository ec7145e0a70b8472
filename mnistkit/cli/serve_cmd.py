"""``mnistkit serve``: a local page to draw digits and watch trained runs decide."""

from __future__ import annotations

from pathlib import Path

import click

from mnistkit.cli import EXIT_INTERRUPTED
from mnistkit.cli.common import current_plugins, load_dataset_for_cli, run_options


@click.command("serve", short_help="Draw digits in the browser and watch trained runs decide.")
@click.argument("run_paths", metavar="RUN...", nargs=-1, required=True,
                type=click.Path(path_type=Path))
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but a loopback address exposes the page "
                   "(without any authentication) to the network.")
@click.option("--open", "open_browser", is_flag=True,
              help="Open the page in the default web browser.")
@run_options
@click.option("--log", "log_requests", is_flag=True, help="Print one line per request.")
def serve_command(run_paths: tuple[Path, ...], port: int, host: str, open_browser: bool,
                  which: str, data_dir: Path | None, log_requests: bool) -> None:
    """Serve a page to draw a digit and see what each RUN thinks of it.

    The page shows the probabilities of the ten classes, the 28x28 image the
    model sees (preprocessed as 'mnistkit predict' does) and, for models with a
    hidden layer, its activations. With several runs, one column each. It also
    takes picture files and shows random test digits. Ctrl-C stops the server.

    \b
    Example:
      mnistkit serve runs/twolayer runs/softmax --open
    """
    from mnistkit.serve import ServeApp, is_loopback, load_served_runs, make_server

    runs, dataset = load_served_runs(
        run_paths, lambda name: load_dataset_for_cli(name, data_dir),
        current_plugins().registry, which)
    app = ServeApp(runs, dataset.test.images, dataset.test.labels)
    server = make_server(app, host, port, log=lambda line: click.echo(line, err=True),
                         on_request=_print_request if log_requests else None)
    if not is_loopback(host):
        click.echo(f"warning: listening on {host}: anyone who can reach this machine on port "
                   f"{server.server_address[1]} can use the page (no authentication); "
                   f"use --host 127.0.0.1 to keep it local", err=True)
    names = ", ".join(run.name for run in runs)
    click.echo(f"Serving {names} at {server.url} (Ctrl-C to stop)")
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("Stopped serving.", err=True)
        raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
    finally:
        server.server_close()


def _print_request(method: str, path: str, status: int, ms: float) -> None:
    click.echo(f"{method} {path[:120]} {status} {ms:.1f} ms", err=True)


COMMANDS = [serve_command]
