"""Records on disk, the record's metric paths, exports. Torch-free."""
