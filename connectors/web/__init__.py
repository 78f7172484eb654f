"""Web chat: JSON API, WebSocket and the embeddable chat page."""
