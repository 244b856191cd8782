"""HTTP API front end (``m2i serve``): aiohttp routes over any engine, local or queue-backed.

Importing the package is cheap; :mod:`.app` (aiohttp) loads only when the server is built.
"""
