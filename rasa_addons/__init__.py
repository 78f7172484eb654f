"""Custom Rasa components, imported by the Rasa server (its own venv) through PYTHONPATH."""

from rasa_addons import fast_action_validation

fast_action_validation.install()
