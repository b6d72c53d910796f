"""Feeds: adapters from recorded or live venue data to validated market snapshots."""
