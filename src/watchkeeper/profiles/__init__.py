"""Profiles: mergeable summaries of a table, and their tallies (task, clients, service)."""
