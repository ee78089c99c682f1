"""humback view: a read-only web app over a run folder (server.py, data.py, static/)."""
