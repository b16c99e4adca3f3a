"""ob-takeover's operator command, HTTP service and client."""
