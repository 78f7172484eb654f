"""Conversation routing, dialogue logic and transcripts."""
