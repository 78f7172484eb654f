"""Channels: one module per channel, each turning its payloads into `bot.service.UserMessage`."""
