"""Analysis reads run records (never writes them) and turns them into tables."""
