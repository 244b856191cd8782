"""Local stand-ins for the services the bots talk to, speaking their real wire protocols."""
