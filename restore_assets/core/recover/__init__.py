"""core.recover."""
