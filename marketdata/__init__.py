"""Market data: the core value types, clock and error tree every layer shares, L2 books, the
consolidated book, and feeds (replay of recorded data, live handlers)."""
