"""`landmarks bot`: the Telegram bot (settings from the environment, see bot/bot.env.example)."""

from __future__ import annotations


def register(commands) -> None:
    bot = commands.add_parser("bot", help="run the Telegram bot (needs TELEGRAM_BOT_TOKEN and LANDMARKS_API_URL)")
    bot.set_defaults(func=run)


def run(args) -> int:
    from bot.__main__ import main

    return main()
