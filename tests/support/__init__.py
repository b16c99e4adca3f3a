"""What the tests share: starting servers (simulator, MariaDB, seekdb), driving takeovers, stand-in activities."""
