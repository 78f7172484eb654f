"""Agent and supervisor console (admin transcript API for now)."""
