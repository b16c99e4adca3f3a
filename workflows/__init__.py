"""Temporal workflows of ob-takeover and the pure task engine they are built on."""
