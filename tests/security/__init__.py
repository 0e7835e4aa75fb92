"""The security suite (docs/security.md): who may reach what, and what bad input can do."""
