"""Configuration: parameter files and their canonical hash (``params``), service settings
(``settings``, read from ``MARGINPROOF_*`` environment variables by the shell)."""
