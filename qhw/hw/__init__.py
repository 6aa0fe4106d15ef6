"""Hardware library: processing elements, systolic array, requantizer, stream blocks."""
