"""Synthetic demo data: procedural chest X-ray phantoms and the multi-source demo archive written from them."""
