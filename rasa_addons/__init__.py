"""Custom Rasa components, imported by the Rasa server (its own venv) through PYTHONPATH."""
