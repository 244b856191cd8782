"""The Telegram front end: translates Telegram updates to :mod:`bot.core` requests and replies back.

Importing this package is cheap and does not need python-telegram-bot (the ``m2i telegram``
command registers itself even when the ``telegram`` extra is missing). Use
:func:`bot.telegram.app.build_application` or :class:`bot.telegram.app.TelegramBot`; beside them,
like :mod:`bot.discord`: ``handlers`` (updates → requests), ``sources`` (a message's audio),
``progress`` (chat actions, the status message), ``layout`` (the photo, caption and buttons) and
``flood`` (Telegram's flood limits, answers first).
"""
