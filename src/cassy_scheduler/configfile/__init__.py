"""What every config file of the product needs, the scheduler's and the server's alike: errors
that name the file, the line and the key, locating keys in TOML text, secrets read from the
environment or a file, and durations written like "90s" or "1h30m"."""
