"""Custom actions Rasa calls through the app's action endpoint (bot/action_server.py).

Importing this package registers every action by its domain name.
"""

from bot.actions import booking, scenario, service

__all__ = ["booking", "scenario", "service"]
