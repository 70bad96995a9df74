"""Enquiries back to the dealer: leads landed raw, parsed into one canonical lead, checked, tied to the car, delivered as ADF."""
