"""One module per command, each a thin layer over a library function."""
