"""The Telegram front end: translates Telegram updates to :mod:`bot.core` requests and replies back.

Importing this package is cheap and does not need python-telegram-bot (the ``m2i telegram``
command registers itself even when the ``telegram`` extra is missing). Use
:func:`bot.telegram.app.build_application` or :class:`bot.telegram.app.TelegramBot`.
"""
