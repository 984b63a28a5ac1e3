"""The front end: listeners and client sessions."""
