"""A real SMTP server for trailwatch's email tests: aiosmtpd on 127.0.0.1.

Messages are delivered into a Maildir (DIR/new), as a mail server would.
Options: STARTTLS (required) or implicit TLS with the given certificate,
and AUTH PLAIN/LOGIN with one user (required, only over TLS). Prints
"ready" when it accepts connections; stops on SIGTERM.

--faults refuse,hang,drop,... misbehaves on successive messages, one fault
each, then delivers normally: refuse answers 451 (try again later), hang
never answers the end of DATA, drop closes the connection after the data
without answering. Faulted messages are not delivered.
"""

import asyncio

import argparse
import logging
import mailbox
import signal
import ssl
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult


class Faulty:
    """Wraps a handler; the first messages meet the listed faults."""

    def __init__(self, inner, faults):
        self.inner = inner
        self.faults = faults

    async def handle_DATA(self, server, session, envelope):
        if self.faults:
            fault = self.faults.pop(0)
            if fault == "refuse":
                return "451 4.3.0 injected fault: try again later"
            if fault == "hang":
                await asyncio.sleep(3600)
            if fault == "drop":
                server.transport.close()
                return "451 4.3.0 never sent"
        return await self.inner.handle_DATA(server, session, envelope)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--maildir", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--implicit-tls", action="store_true")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--faults", default="")
    a = p.parse_args()
    logging.basicConfig(level=logging.ERROR)

    mailbox.Maildir(a.maildir, create=True)
    handler = Mailbox(a.maildir)
    if a.faults:
        handler = Faulty(handler, a.faults.split(","))
    kwargs = {}
    ctx = None
    if a.cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.cert, a.key)
    if a.user:

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (
                auth_data.login.decode() == a.user
                and auth_data.password.decode() == a.password
            )
            # handled=False: aiosmtpd answers 535 itself (the default,
            # handled=True, answers nothing and the client hangs).
            return AuthResult(success=ok, handled=False)

        kwargs.update(authenticator=authenticator, auth_required=True)
    if ctx is not None and a.implicit_tls:
        # The whole connection is TLS, but aiosmtpd only knows STARTTLS as
        # "TLS" when deciding whether AUTH is allowed.
        controller = Controller(
            handler,
            hostname="127.0.0.1",
            port=a.port,
            ssl_context=ctx,
            auth_require_tls=False,
            **kwargs,
        )
    elif ctx is not None:
        controller = Controller(
            handler,
            hostname="127.0.0.1",
            port=a.port,
            tls_context=ctx,
            require_starttls=True,
            **kwargs,
        )
    else:
        controller = Controller(
            handler,
            hostname="127.0.0.1",
            port=a.port,
            auth_require_tls=False,
            **kwargs,
        )
    controller.start()
    print("ready", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    controller.stop()


if __name__ == "__main__":
    main()
