"""Exchange presets: margin "the way the venue does it", behind the common model interface.

``deribit-standard``, ``deribit-pm``, ``derive-pmrm`` and ``derive-srm`` (see
``docs/models/<name>.md``). Each preset is parameter data (``configs/presets/<name>.toml``)
plus a pure engine working on explicit inputs and an adapter from portfolio + market.
"""
