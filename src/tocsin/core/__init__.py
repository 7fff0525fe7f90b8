"""The deterministic core: no I/O, no clock, no network. Adapters call it; it never imports them."""
