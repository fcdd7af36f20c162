"""Golden models of defa-hw: the float reference and the bit-exact INT12 model (the spec)."""
