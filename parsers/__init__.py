"""mtalens' pure parsers: text or bytes in, typed records out. No I/O, no clock, no store."""
