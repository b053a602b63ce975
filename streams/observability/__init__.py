"""What operators watch: counters, health."""
