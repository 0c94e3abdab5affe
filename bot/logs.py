"""Structured (logfmt) logging to stderr, quiet by default (WARNING), with secrets redacted.

aiogram puts the bot token in every Bot API URL, and some network errors quote the URL, so the
formatter scrubs the final line rather than trusting each call site.
"""

from __future__ import annotations

import logging
import re
import sys
import time

# The shape of any Bot API token (`<bot id>:<35 characters>`), for tokens the formatter was not told about.
TOKEN_PATTERN = re.compile(r"\d{5,}:[A-Za-z0-9_-]{30,}")
REDACTED = "<redacted>"

# Attributes every LogRecord has; anything else came from `extra=` and is printed as a field.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _quote(value: object) -> str:
    text = str(value)
    if text and not any(c in text for c in ' ="\n'):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class LogfmtFormatter(logging.Formatter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [secret for secret in secrets if secret]

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        fields = {
            "ts": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields.update({key: value for key, value in vars(record).items() if key not in _STANDARD})
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        line = " ".join(f"{key}={_quote(value)}" for key, value in fields.items())
        for secret in self.secrets:
            line = line.replace(secret, REDACTED)
        return TOKEN_PATTERN.sub(REDACTED, line)


def setup_logging(level: str, secrets: list[str]) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpcore's connection-level records are noise even when debugging the bot.
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    if root.level > logging.DEBUG:
        # httpx logs every request at INFO, which would drown the bot's own records.
        logging.getLogger("httpx").setLevel(logging.WARNING)
