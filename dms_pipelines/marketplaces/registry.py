"""Which marketplace modules exist, and rendering a dealer's stock for each marketplace it publishes to."""

from dms_pipelines.config import Dealer
from dms_pipelines.marketplaces import autotrader, carsnip, google, meta, website
from dms_pipelines.marketplaces.base import MarketplaceSpec, Rendered, render_for

SPECS: dict[str, MarketplaceSpec] = {module.SPEC.name: module.SPEC for module in (google, website, meta, carsnip, autotrader)}


def render_dealer(dealer: Dealer, stock, marketplace: str) -> Rendered | None:
    """The dealer's feed for `marketplace`, or None when the dealer does not publish there."""
    account = dealer.marketplaces.get(marketplace)
    if account is None:
        return None
    return render_for(SPECS[marketplace], stock, dealer, account)
