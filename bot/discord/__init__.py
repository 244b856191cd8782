"""The Discord front end of m2i: ``/visualize``, the Visualize message menu, audio sent to the bot.

Only the translation to Discord lives here (discord.py); everything shared with the other chat
platforms — options, limits, rate limits, texts, replies, button actions — is :mod:`bot.core`.
Run it with ``m2i discord`` (or ``m2i bots --platform discord``); see :mod:`bot.discord.app`.
"""
