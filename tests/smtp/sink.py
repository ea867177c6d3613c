"""SMTP sink for the integration tests: aiosmtpd on HOST PORT, filing every message it
accepts into the Maildir MAILDIR (with X-MailFrom and X-RcptTo headers).

With SINK_USERNAME and SINK_PASSWORD in the environment it requires AUTH (PLAIN or
LOGIN) with exactly those credentials, over the plain connection a loopback relay uses.

Usage: python sink.py HOST PORT MAILDIR
"""

import asyncio
import os
import sys

from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def main() -> None:
    host, port, maildir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    username = os.environ.get("SINK_USERNAME")
    password = os.environ.get("SINK_PASSWORD")
    handler = Mailbox(maildir)

    def authenticator(_server, _session, _envelope, _mechanism, auth_data):
        accepted = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == username
            and auth_data.password.decode() == password
        )
        return AuthResult(success=accepted, handled=False)

    options = {}
    if username and password:
        options = {
            "authenticator": authenticator,
            "auth_required": True,
            "auth_require_tls": False,
        }
    loop = asyncio.new_event_loop()
    loop.run_until_complete(
        loop.create_server(lambda: SMTP(handler, **options), host, port)
    )
    loop.run_forever()


if __name__ == "__main__":
    main()
