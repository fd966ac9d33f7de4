"""One folder per compression method; importing a method registers its record step."""
