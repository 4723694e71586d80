"""devservices."""
