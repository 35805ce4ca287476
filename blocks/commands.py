"""Protocol handlers of the block family (block_create, block_read)."""
