"""Custom Rasa components. Imported by the Rasa server (its own venv), never by the app."""
