"""The model monitoring page (an admin view with charts)."""
