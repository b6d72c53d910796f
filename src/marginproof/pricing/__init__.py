"""Option pricing: Black-76 prices, greeks (USD and coin) and implied vols."""

from marginproof.pricing.black76 import Black76Greeks, black76_greeks, black76_price
from marginproof.pricing.implied_vol import implied_vol, implied_vol_one

__all__ = ["Black76Greeks", "black76_greeks", "black76_price", "implied_vol", "implied_vol_one"]
