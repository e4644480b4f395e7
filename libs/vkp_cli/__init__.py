"""The `vkp` command line."""
