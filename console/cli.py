"""``fraudscore console``: the analysts' case console in the browser, served by waitress on loopback.

    fraudscore console --token-file console.token --model-base models/creditcard   # http://127.0.0.1:8080

The queue, a case's page and its decisions go through the same :class:`cases.casebook.Casebook` as
``fraudscore cases``. The token is read like the scorer's (``--token-file``, else env FRAUDSCORE_TOKEN);
analysts log in with it and their name.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import warnings

from console.config import ConsoleConfig, add_arguments

__all__ = ["add_arguments", "main"]

log = logging.getLogger(__name__)


def main(args: argparse.Namespace) -> int:
    from fraudscore.config import ConfigError

    try:
        config = ConsoleConfig.from_args(args, os.environ)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return serve(config)


def serve(config: ConsoleConfig) -> int:
    from waitress import create_server

    from cases.casebook import Casebook
    from cases.store import CaseStore
    from console.app import create_app
    from console.models import ModelCards
    from console.queue import ProcessScan, Queue

    # The Bigtable client warns on every connection to the emulator: noise, as in `fraudscore cases`.
    warnings.filterwarnings("ignore", message="Connecting to Bigtable emulator", category=RuntimeWarning)
    scan = ProcessScan(config.resources)
    with CaseStore(config.resources) as store:
        book = Casebook(store)
        queue = Queue(scan, config.refresh_s, changed=scan.changed_between, full_every_s=config.full_rescan_s).start()
        app = create_app(
            book,
            queue,
            config.token,
            models=ModelCards(config.model_base),
            page_size=config.page_size,
            poll_s=config.poll_s,
        )
        server = create_server(app, host=config.host, port=config.port, threads=config.threads)
        host, port = server.socket.getsockname()[:2]  # type: ignore[union-attr]
        # The line the demo and the tests wait for: the address, once the socket listens.
        print(f"console listening on http://{host}:{port}/", flush=True)
        # SIGTERM (the demo's stop, a service manager, the tests) ends it like Ctrl-C: the clean-up below runs.
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            server.run()
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            scan.close()
            queue.stop()
            server.close()
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
