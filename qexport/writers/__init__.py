"""Writer plugins: one module per output format, each exposing `WRITER` (a WriterPlugin)."""
