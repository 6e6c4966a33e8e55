"""Real model files shared by the runner tests (the fixtures live in tests/conftest.py)."""
