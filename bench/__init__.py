"""Load generator for the Parsec server (ours and the 2.17 reference): see bench/README.md."""
